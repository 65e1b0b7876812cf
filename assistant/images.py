"""Image requests against their model's limits (size, steps, prompt, seed, guidance), and their exact price.

A request is checked whole before anything is held: every broken limit is named at once. The price is
known before the job starts: `steps x step_price`, the step price being `per_megapixel_step` for each
megapixel of the image (rounded up to the micro-credit), so a cancel mid-way pays the steps done."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from assistant.providers.images import ImageRequest
from assistant.specs import ModelSpec

MAX_SEED = 2**32 - 1
MEGAPIXEL = 1_000_000
# A T5 prompt token is at most a few letters of a word or one punctuation mark: counting runs of at most
# four word characters, and each other non-space character, bounds FLUX's count from above for prose.
_TOKEN = re.compile(r"\w{1,4}|[^\w\s]")


class ImageLimitError(ValueError):
    """The request breaks the model's limits; `errors` names each field and what it must be."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in errors.items()))
        self.errors = dict(errors)


def prompt_tokens(prompt: str) -> int:
    """An upper estimate of the prompt's tokens for FLUX's T5 encoder."""
    return len(_TOKEN.findall(prompt))


def _int(caps: Mapping[str, Any], name: str, default: int) -> int:
    return int(caps.get(name, default))


def _side_error(caps: Mapping[str, Any], value: int) -> str | None:
    low, high, multiple = (
        _int(caps, "min_side", 64),
        _int(caps, "max_side", 2048),
        _int(caps, "multiple_of", 16),
    )
    if not low <= value <= high or value % multiple:
        return f"must be a multiple of {multiple} from {low} to {high}"
    return None


def check_request(
    spec: ModelSpec,
    *,
    prompt: str,
    width: int,
    height: int,
    steps: int | None,
    seed: int | None,
    guidance: float | None,
    default_seed: int,
) -> ImageRequest:
    """The request filled in from the model's defaults (upstream: the model id); ImageLimitError names
    every broken limit."""
    caps = spec.capabilities
    errors: dict[str, str] = {}
    for name, value in (("width", width), ("height", height)):
        if (problem := _side_error(caps, value)) is not None:
            errors[name] = problem
    max_mp = float(caps.get("max_megapixels", 4))
    if "width" not in errors and "height" not in errors and width * height > max_mp * 1024 * 1024:
        errors["width"] = (
            f"width x height must be at most {max_mp:g} megapixels ({max_mp * 1024 * 1024:.0f} pixels)"
        )
    low, high = _int(caps, "min_steps", 1), _int(caps, "max_steps", 50)
    steps = _int(caps, "default_steps", high) if steps is None else steps
    if not low <= steps <= high:
        errors["steps"] = f"must be from {low} to {high} for {spec.id}"
    limit = _int(caps, "max_prompt_tokens", 256)
    if not prompt.strip():
        errors["prompt"] = "must not be empty"
    elif prompt_tokens(prompt) > limit:
        errors["prompt"] = (
            f"must be at most {limit} tokens for {spec.id} (about {prompt_tokens(prompt)} given)"
        )
    seed = default_seed if seed is None else seed
    if not 0 <= seed <= MAX_SEED:
        errors["seed"] = f"must be from 0 to {MAX_SEED}"
    g_low, g_high = (float(v) for v in caps.get("guidance", (0, 0)))
    guidance = float(caps.get("default_guidance", g_low)) if guidance is None else float(guidance)
    if not g_low <= guidance <= g_high:
        errors["guidance"] = f"must be from {g_low:g} to {g_high:g} for {spec.id}"
    if errors:
        raise ImageLimitError(errors)
    return ImageRequest(spec.id, prompt, width, height, steps, seed, guidance)


def step_price(pricing: Mapping[str, int], *, width: int, height: int) -> int:
    """Micro-credits of one step of one image of this size (at least 1)."""
    return max(1, -(-int(pricing["per_megapixel_step"]) * width * height // MEGAPIXEL))


def image_price(pricing: Mapping[str, int], *, width: int, height: int, steps: int) -> int:
    """The exact price of one image: its steps times the price of a step."""
    return steps * step_price(pricing, width=width, height=height)
