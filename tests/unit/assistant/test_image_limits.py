"""Image requests against their model's limits, their exact price, and diffusion logs read as steps."""

from __future__ import annotations

import pytest

from assistant.catalog import DEFAULT_CATALOG, read_catalog
from assistant.images import ImageLimitError, check_request, image_price, prompt_tokens, step_price
from assistant.providers.images import steps_from_logs
from runtime.settings import SettingsError, load_settings

SPECS = {spec.id: spec for spec in read_catalog(DEFAULT_CATALOG)}


def ask(model: str, **given: object) -> object:
    values: dict[str, object] = {
        "prompt": "a fox",
        "width": 1024,
        "height": 768,
        "steps": None,
        "seed": None,
        "guidance": None,
        "default_seed": 5,
        **given,
    }
    return check_request(SPECS[model], **values)  # type: ignore[arg-type]


def test_defaults_come_from_the_model() -> None:
    schnell = ask("flux-schnell")
    assert (schnell.steps, schnell.guidance, schnell.seed, schnell.upstream) == (4, 0.0, 5, "flux-schnell")
    assert ask("flux-dev").steps == 28
    assert ask("flux-dev").guidance == 3.5


@pytest.mark.parametrize(
    ("model", "given", "field"),
    [
        ("flux-schnell", {"steps": 5}, "steps"),
        ("flux-schnell", {"guidance": 3.5}, "guidance"),
        ("flux-dev", {"steps": 51}, "steps"),
        ("flux-dev", {"width": 1000}, "width"),
        ("flux-dev", {"height": 48}, "height"),
        ("flux-dev", {"width": 2064}, "width"),
        ("flux-dev", {"width": 2048, "height": 2048 + 16}, "height"),
        ("flux-dev", {"width": 2048, "height": 2048}, None),
        ("flux-schnell", {"prompt": "word " * 257}, "prompt"),
        ("flux-schnell", {"prompt": "   "}, "prompt"),
        ("flux-schnell", {"seed": -1}, "seed"),
        ("flux-schnell", {"seed": 2**32}, "seed"),
    ],
)
def test_every_limit_is_checked(model: str, given: dict[str, object], field: str | None) -> None:
    if field is None:
        ask(model, **given)
        return
    with pytest.raises(ImageLimitError) as refused:
        ask(model, **given)
    assert field in refused.value.errors


def test_all_broken_limits_are_named_at_once() -> None:
    with pytest.raises(ImageLimitError) as refused:
        ask("flux-schnell", width=10, steps=9, seed=-3)
    assert set(refused.value.errors) == {"width", "steps", "seed"}


def test_the_price_is_steps_times_a_step_of_that_size() -> None:
    pricing = SPECS["flux-dev"].pricing
    one = step_price(pricing, width=1024, height=1024)
    assert one == -(-900_000 * 1024 * 1024 // 1_000_000)
    assert image_price(pricing, width=1024, height=1024, steps=28) == 28 * one
    assert step_price({"per_megapixel_step": 1}, width=64, height=64) == 1  # never free
    assert all(SPECS[m].priced for m in ("flux-schnell", "flux-dev", "sketch-local"))


def test_prompt_tokens_bound_prose_from_above() -> None:
    assert prompt_tokens("a red fox") == 3
    assert prompt_tokens("extraordinarily") == 4
    assert prompt_tokens("hi, there!") == 5  # hi , ther e !


def test_steps_are_read_from_tqdm_and_plain_logs() -> None:
    tqdm = "Using seed: 3\n 45%|####5     | 9/20 [00:01<00:02, 8.1it/s]"
    assert steps_from_logs(tqdm) == (9, 20, 2.0)
    assert steps_from_logs("step 3/28\nstep 4/28") == (4, 28, None)
    assert steps_from_logs("loading weights") == (None, None, None)


def test_image_providers_may_be_chosen_per_model_by_settings() -> None:
    settings = load_settings(IMAGE_PROVIDERS="flux-dev=fal, flux-schnell=replicate")
    assert settings.image_provider_of("flux-dev", "bfl") == "fal"
    assert settings.image_provider_of("sketch-local", "sketch") == "sketch"
    with pytest.raises(SettingsError, match="IMAGE_PROVIDERS"):
        load_settings(IMAGE_PROVIDERS="flux-dev=midjourney")
