"""Which model analyses an image: the named one, else a vision-language model, else the local analyser."""

from __future__ import annotations

import pytest

from assistant.selection import ModelUnavailable
from assistant.specs import ModelSpec
from orchestration.images.vision import choose_model

CHAT = {"input_per_million": 1, "output_per_million": 1}


def spec(name: str, kind: str = "chat", *, vision: bool = True, available: bool = True) -> ModelSpec:
    pricing = {"per_image": 1000} if kind == "vision" else CHAT
    return ModelSpec(
        id=name,
        provider="x",
        kind=kind,
        capabilities={"vision": vision},
        pricing=pricing,
        price_version="v",
        available=available,
    )


def test_a_reachable_vlm_is_the_default_else_the_local_analyser() -> None:
    analyser = spec("inspect-local", "vision")
    assert choose_model([spec("text-only", vision=False), analyser, spec("vlm")], None).id == "vlm"
    assert choose_model([spec("vlm", available=False), analyser], None).id == "inspect-local"
    assert choose_model([spec("vlm"), analyser], "inspect-local").id == "inspect-local"


def test_a_model_that_cannot_see_is_refused_by_name() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        choose_model([spec("text-only", vision=False), spec("inspect-local", "vision")], "text-only")
    assert caught.value.available == ["inspect-local"]
    with pytest.raises(ModelUnavailable):
        choose_model([spec("text-only", vision=False)], None)
