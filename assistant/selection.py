"""Which model answers: explicit, else the conversation's, else the user's default, else by cost mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assistant.specs import ModelSpec

COST_MODES = ("cheapest", "balanced", "best")


class ModelUnavailable(ValueError):
    """The model can't be used here; `available` names those that can."""

    def __init__(self, message: str, available: Sequence[str]) -> None:
        super().__init__(f"{message}; available: {', '.join(available) or 'none'}")
        self.available = list(available)


def fits(spec: ModelSpec, kind: str, needs: Mapping[str, Any]) -> bool:
    """Available, priced, of `kind`, and with every needed capability."""
    if not (spec.available and spec.priced and spec.kind == kind):
        return False
    for name, wanted in needs.items():
        have = spec.capabilities.get(name)
        if wanted is True and not have:
            return False
        if not isinstance(wanted, bool) and int(have or 0) < int(wanted):
            return False
    return True


def _price(spec: ModelSpec) -> int:
    return sum(int(value) for value in spec.pricing.values())


def by_cost_mode(candidates: Sequence[ModelSpec], cost_mode: str) -> ModelSpec:
    """cheapest: lowest price; best: highest quality; balanced: best quality among the cheaper half."""
    by_price = sorted(candidates, key=lambda spec: (_price(spec), -spec.quality, spec.id))
    if cost_mode == "cheapest":
        return by_price[0]
    if cost_mode == "best":
        return max(candidates, key=lambda spec: (spec.quality, -_price(spec), spec.id))
    cheaper_half = by_price[: (len(by_price) + 1) // 2]
    return max(cheaper_half, key=lambda spec: (spec.quality, -_price(spec), spec.id))


def select_model(
    models: Sequence[ModelSpec],
    *,
    explicit: str | None = None,
    conversation: str | None = None,
    user_default: str | None = None,
    cost_mode: str = "balanced",
    kind: str = "chat",
    needs: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """The model for a request; ModelUnavailable (naming the usable ones) if none fits."""
    needs = needs or {}
    usable = [spec for spec in models if fits(spec, kind, needs)]
    names = [spec.id for spec in usable]
    by_id = {spec.id: spec for spec in models}
    if explicit:
        spec = by_id.get(explicit)
        if spec is None:
            raise ModelUnavailable(f"unknown model {explicit!r}", names)
        if not spec.priced:
            raise ModelUnavailable(f"model {explicit!r} has no price and is refused", names)
        if spec not in usable:
            raise ModelUnavailable(f"model {explicit!r} is not available for this request", names)
        return spec
    for preferred in (conversation, user_default):
        if preferred and preferred in names:
            return by_id[preferred]
    if not usable:
        raise ModelUnavailable(f"no {kind} model is available", names)
    return by_cost_mode(usable, cost_mode if cost_mode in COST_MODES else "balanced")
