"""Images for vision models: checks, the catalog's token rules, downscaling, and the local analyser."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from assistant.imaging import ImageRefused, fitted_size, image_tokens, prepare
from assistant.providers import inspect
from tests.support.images import GPT_4O_TILES, picture, png_bomb

GPT_4O = GPT_4O_TILES
PATCHES = {"formula": "patches", "patch": 32, "max_patches": 1536, "max_side": 4096}


@pytest.mark.parametrize(
    ("size", "fitted", "tokens"),
    [
        ((1024, 1024), (768, 768), 85 + 170 * 4),  # OpenAI's worked example: 765 tokens
        ((2048, 4096), (768, 1536), 85 + 170 * 6),  # OpenAI's worked example: 1105 tokens
        ((4000, 3000), (1024, 768), 85 + 170 * 4),  # fit into 2048, then short side 768
        ((300, 200), (300, 200), 85 + 170 * 1),  # never upscaled
    ],
)
def test_tile_rule_matches_openais_published_examples(size, fitted, tokens) -> None:
    assert fitted_size(size, GPT_4O) == fitted
    assert image_tokens(fitted, GPT_4O) == tokens


def test_patch_rule_stays_within_its_patch_budget() -> None:
    fitted = fitted_size((1800, 2400), PATCHES)
    assert image_tokens(fitted, PATCHES) <= 1536
    assert image_tokens(fitted, PATCHES) > 1400  # close to the budget, not far below it
    assert fitted_size((64, 64), PATCHES) == (64, 64)
    assert image_tokens((64, 64), PATCHES) == 4


def test_prepare_downscales_before_counting_and_strips_metadata() -> None:
    original = picture(1600, 1200, "JPEG", exif={0x010F: "TestCam", 0x0110: "Model 1"})
    prepared = prepare(original, GPT_4O, max_pixels=10_000_000)
    assert (prepared.format, prepared.original_size, prepared.size) == ("JPEG", (1600, 1200), (1024, 768))
    assert prepared.tokens == 85 + 170 * 4
    assert prepared.exif == {"Make": "TestCam", "Model": "Model 1"}
    with Image.open(io.BytesIO(prepared.data)) as sent:
        assert sent.size == (1024, 768)
        assert not sent.getexif()  # what a model receives carries no metadata
    assert prepare(picture(40, 30, "PNG", alpha=True), GPT_4O, max_pixels=10_000).media_type == "image/png"


def test_bombs_other_formats_and_garbage_are_refused() -> None:
    bomb = png_bomb()
    assert len(bomb) < 2000
    with pytest.raises(ImageRefused) as caught:
        prepare(bomb, GPT_4O, max_pixels=40_000_000)
    assert caught.value.reason == "too_many_pixels"
    with pytest.raises(ImageRefused) as caught:
        prepare(picture(10, 10, "BMP"), GPT_4O, max_pixels=1000)
    assert caught.value.reason == "format"
    with pytest.raises(ImageRefused) as caught:
        prepare(b"<svg xmlns='http://www.w3.org/2000/svg'/>", GPT_4O, max_pixels=1000)
    assert caught.value.reason == "format"
    truncated = picture(200, 200, "PNG")[:300]
    with pytest.raises(ImageRefused) as caught:
        prepare(truncated, GPT_4O, max_pixels=100_000)
    assert caught.value.reason == "corrupt"


def test_the_local_analyser_reports_what_it_computes() -> None:
    report = inspect.analyse(picture(200, 100, "PNG"))
    assert report["analysed_size"] == {"width": 200, "height": 100}
    colours = {c["hex"]: c["share_percent"] for c in report["dominant_colours"]}
    assert colours.get("#c81e1e", 0) >= 45
    assert colours.get("#1428dc", 0) >= 45
    same = inspect.analyse(picture(400, 200, "JPEG"))["dhash"]
    other = inspect.analyse(picture(400, 200, "JPEG", colour=(20, 40, 220)))["dhash"]
    assert bin(int(report["dhash"], 16) ^ int(same, 16)).count("1") <= 4  # resized, re-encoded: near
    assert report["dhash"] != other
