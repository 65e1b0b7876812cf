"""A model as the catalog describes it (assistant/catalog.py loads them; providers serve them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHAT_PRICES = ("input_per_million", "output_per_million")
VISION_PRICES = ("per_image",)  # a `vision` model (the local analyser) is priced per image
IMAGE_PRICES = ("per_megapixel_step",)
PRICES = {
    "chat": CHAT_PRICES,
    "embedding": ("input_per_million",),
    "vision": VISION_PRICES,
    "image": IMAGE_PRICES,
}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the catalog; prices are integer micro-credits."""

    id: str
    provider: str
    kind: str
    capabilities: Mapping[str, Any]
    pricing: Mapping[str, int]
    price_version: str
    quality: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    environments: tuple[str, ...] = ()
    available: bool = False
    unavailable_reason: str | None = None

    @property
    def priced(self) -> bool:
        """True when every price this kind needs is set (a model without one is refused)."""
        needed = PRICES.get(self.kind, ())
        return bool(self.pricing) and all(isinstance(self.pricing.get(name), int) for name in needed)

    @property
    def context_length(self) -> int:
        """Tokens the model reads and writes in one call."""
        return int(self.capabilities.get("context_length", 2048))

    def listed_in(self, environment: str) -> bool:
        """Whether this environment lists the model (e.g. `echo` only in development and tests)."""
        return not self.environments or environment in self.environments
