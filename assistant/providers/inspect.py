"""`inspect`: the local image analyser (`inspect-local` in the catalog), for the embedded default with no
vision-language model reachable. It reports only what it computes from the pixels and the file (size,
dominant colours, a perceptual hash, the EXIF the intake read); it does not describe or answer questions
about the image, and never presents itself as a vision-language model."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from assistant.providers import Chunk, ProviderError
from runtime.settings import Settings

if TYPE_CHECKING:
    from assistant.specs import ModelSpec
    from assistant.transcript import Turn

COLOURS = 5
HASH_SIDE = 8  # a 64-bit difference hash


def available(spec: ModelSpec, settings: Settings) -> bool:
    """Always: it needs nothing but Pillow."""
    return True


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Not a chat model: refused (final)."""
    raise ProviderError(f"{spec.id} analyses images; it does not answer messages", retryable=False)


def analyse(data: bytes) -> dict[str, Any]:
    """What the pixels say: size, mode, dominant colours (share of pixels) and a difference hash."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    return {
        "analysed_size": {"width": rgb.width, "height": rgb.height},
        "dominant_colours": dominant_colours(rgb),
        "dhash": dhash(rgb),
    }


def dominant_colours(image: Image.Image, count: int = COLOURS) -> list[dict[str, Any]]:
    """The `count` most common colours after median-cut quantisation of a thumbnail, with their share."""
    small = image.copy()
    small.thumbnail((128, 128))
    quantised = small.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette: list[int] = list(quantised.getpalette() or [])
    total = small.width * small.height
    counted: list[tuple[int, Any]] = sorted(quantised.getcolors() or [], reverse=True)
    colours = []
    for pixels, index in counted[:count]:
        start = 3 * int(index)  # a palette index: quantised images are mode P
        red, green, blue = palette[start : start + 3]
        colours.append(
            {"hex": f"#{red:02x}{green:02x}{blue:02x}", "share_percent": round(100 * pixels / total)}
        )
    return colours


def dhash(image: Image.Image) -> str:
    """A 64-bit difference hash (hex): each bit says whether a pixel of a 9x8 grey thumbnail is brighter
    than its right neighbour; near-identical images differ in few bits."""
    grey = image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = grey.tobytes()  # mode L: one byte a pixel, row by row
    bits = 0
    for row in range(HASH_SIDE):
        for col in range(HASH_SIDE):
            left = pixels[row * (HASH_SIDE + 1) + col]
            right = pixels[row * (HASH_SIDE + 1) + col + 1]
            bits = (bits << 1) | int(left > right)
    return f"{bits:016x}"


def summary(report: Mapping[str, Any]) -> str:
    """The report as short text lines (streamed as the job's token events)."""
    original = report["original_size"]
    lines = [
        f"{report['model']} (a local analyser, not a vision-language model) computed:",
        f"format {report['format']}, {original['width']}x{original['height']} pixels",
        "dominant colours: "
        + ", ".join(f"{c['hex']} {c['share_percent']}%" for c in report["dominant_colours"]),
        f"difference hash {report['dhash']}",
        f"EXIF tags: {len(report['exif'])}",
    ]
    return "\n".join(lines) + "\n"
