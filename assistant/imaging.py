"""Images for vision models: decoded and checked with Pillow, downscaled to a model's limit, counted in the
model's image tokens, and re-encoded so the model sees exactly the pixels that were checked and quoted.

Each vision model's catalog entry says how it counts an image (`capabilities.image`):
- `tiles` (OpenAI GPT-4o family, high detail): fit inside `max_side` x `max_side`, then shrink so the
  short side is at most `short_side`; tokens = `base_tokens` + `tokens_per_tile` x the `tile`-pixel
  tiles covering it;
- `patches` (GPT-4.1-mini family, Qwen-VL style): `patch`-pixel patches, shrunk until at most
  `max_patches`; tokens = patches;
- `flat`: fit inside `max_side`; no tokens (the model is priced per image).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
MEDIA_TYPES = frozenset(FORMATS.values())
EXIF_TAGS = 40
EXIF_VALUE_CHARS = 120


class ImageRefused(ValueError):
    """The bytes are not an image we accept (format, size, decompression bomb); the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PreparedImage:
    """A checked image as a model will see it, and what it costs in the model's image tokens."""

    format: str
    original_size: tuple[int, int]
    size: tuple[int, int]
    tokens: int
    media_type: str
    data: bytes
    exif: Mapping[str, str]


def open_checked(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` fully, refusing other formats and images over `max_pixels` before decoding them."""
    try:
        # The header alone gives the size: a bomb (a few KB declaring a gigapixel) is refused before
        # any pixel is decoded. Pillow's own limit warns at MAX_IMAGE_PIXELS; ours is checked first.
        image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError:
        raise ImageRefused("too_many_pixels", f"the image declares more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageRefused("format", f"not a PNG, JPEG, WebP or GIF image ({type(exc).__name__})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ImageRefused("too_many_pixels", f"{width}x{height} is more than {max_pixels} pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused("corrupt", f"the image could not be decoded ({type(exc).__name__})") from None
    return image


def fitted_size(size: tuple[int, int], rule: Mapping[str, Any]) -> tuple[int, int]:
    """The size the model's rule downscales `size` to (never upscaled)."""
    width, height = size
    scale = min(1.0, int(rule.get("max_side", 2048)) / max(width, height))
    if rule.get("formula") == "tiles":
        scale = min(scale, int(rule.get("short_side", 768)) / min(width, height))
    elif rule.get("formula") == "patches":
        patch, most = int(rule.get("patch", 32)), int(rule.get("max_patches", 1536))
        scale = min(scale, math.sqrt(most * patch * patch / (width * height)))
    fitted = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    if rule.get("formula") == "patches":
        patch, most = int(rule.get("patch", 32)), int(rule.get("max_patches", 1536))
        while math.ceil(fitted[0] / patch) * math.ceil(fitted[1] / patch) > most:  # rounding up can overshoot
            fitted = max(1, fitted[0] - 1), max(1, fitted[1] - 1)
    return fitted


def image_tokens(size: tuple[int, int], rule: Mapping[str, Any]) -> int:
    """Tokens the model counts for an image of `size` (already fitted)."""
    width, height = size
    formula = rule.get("formula", "flat")
    if formula == "tiles":
        tile = int(rule.get("tile", 512))
        tiles = math.ceil(width / tile) * math.ceil(height / tile)
        return int(rule.get("base_tokens", 85)) + int(rule.get("tokens_per_tile", 170)) * tiles
    if formula == "patches":
        patch = int(rule.get("patch", 32))
        return math.ceil(width / patch) * math.ceil(height / patch)
    return 0


def prepare(data: bytes, rule: Mapping[str, Any], *, max_pixels: int) -> PreparedImage:
    """Check, downscale to the rule's limit and re-encode (metadata stripped; PNG with alpha, else JPEG)."""
    image = open_checked(data, max_pixels=max_pixels)
    original = image.size
    fitted = fitted_size(original, rule)
    exif = exif_of(image)
    frame = image.convert("RGBA" if _has_alpha(image) else "RGB")
    if fitted != original:
        frame = frame.resize(fitted, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, format="PNG", optimize=True)
        media_type = "image/png"
    else:
        frame.save(out, format="JPEG", quality=90)
        media_type = "image/jpeg"
    return PreparedImage(
        format=str(image.format),
        original_size=original,
        size=fitted,
        tokens=image_tokens(fitted, rule),
        media_type=media_type,
        data=out.getvalue(),
        exif=exif,
    )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def exif_of(image: Image.Image) -> dict[str, str]:
    """The image's EXIF tags by name (the first few, values shortened), as the file states them."""
    found: dict[str, str] = {}
    for tag, value in list(image.getexif().items())[:EXIF_TAGS]:
        name = ExifTags.TAGS.get(tag, f"tag_{tag}")
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        found[name] = text.replace("\x00", "")[:EXIF_VALUE_CHARS]
    return found
