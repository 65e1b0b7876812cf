"""Model selection, pricing and the catalog file: pure logic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from assistant.catalog import DEFAULT_CATALOG, CatalogError, price_version_of, read_catalog
from assistant.pricing import chat_cost, chat_hold
from assistant.selection import ModelUnavailable, select_model
from assistant.specs import ModelSpec


def spec(name: str, price: int, quality: int, **changes: object) -> ModelSpec:
    base = ModelSpec(
        id=name,
        provider="echo",
        kind="chat",
        quality=quality,
        available=True,
        price_version="v1",
        capabilities={"context_length": 4096, "streaming": True, "tools": False},
        pricing={"input_per_million": price, "output_per_million": 4 * price},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


MODELS = [
    spec("tiny", 10, 1),
    spec("small", 100, 3),
    spec("mid", 1_000, 5, capabilities={"context_length": 32_000, "streaming": True, "tools": True}),
    spec("big", 10_000, 9, capabilities={"context_length": 128_000, "streaming": True, "tools": True}),
    spec("offline", 1, 10, available=False),
    spec("free", 0, 10, pricing={}),
]


def test_explicit_model_wins() -> None:
    assert select_model(MODELS, explicit="big", conversation="small", user_default="tiny").id == "big"


def test_then_conversation_then_user_default() -> None:
    assert select_model(MODELS, conversation="small", user_default="tiny").id == "small"
    assert select_model(MODELS, user_default="tiny", cost_mode="best").id == "tiny"
    # an unavailable preference falls through to the cost mode
    assert select_model(MODELS, conversation="offline", user_default="free", cost_mode="best").id == "big"


@pytest.mark.parametrize(("mode", "expected"), [("cheapest", "tiny"), ("balanced", "small"), ("best", "big")])
def test_cost_modes(mode: str, expected: str) -> None:
    assert select_model(MODELS, cost_mode=mode).id == expected


def test_needed_capabilities_filter_candidates() -> None:
    assert select_model(MODELS, cost_mode="cheapest", needs={"tools": True}).id == "mid"
    assert select_model(MODELS, cost_mode="cheapest", needs={"context_length": 100_000}).id == "big"


def test_unknown_unavailable_and_unpriced_models_are_refused_naming_the_available_ones() -> None:
    for name, reason in (("nope", "unknown"), ("offline", "not available"), ("free", "no price")):
        with pytest.raises(ModelUnavailable) as caught:
            select_model(MODELS, explicit=name)
        assert reason in str(caught.value)
        assert caught.value.available == ["tiny", "small", "mid", "big"]
    with pytest.raises(ModelUnavailable, match="no chat model"):
        select_model([MODELS[4], MODELS[5]])


def test_cost_is_exact_and_rounds_up_and_hold_covers_the_worst_case() -> None:
    pricing = {"input_per_million": 150_000_000, "output_per_million": 600_000_000}
    assert chat_cost(pricing, input_tokens=10, output_tokens=5) == 10 * 150 + 5 * 600
    assert chat_cost({"input_per_million": 1, "output_per_million": 1}, input_tokens=1, output_tokens=0) == 1
    assert chat_hold(pricing, prompt_tokens=100, max_tokens=50) == 100 * 150 + 50 * 600


def test_catalog_file_loads_and_price_version_follows_the_prices(tmp_path: Path) -> None:
    specs = {model.id: model for model in read_catalog(DEFAULT_CATALOG)}
    assert {"echo", "gemma-3-270m"} <= set(specs)
    assert specs["echo"].priced
    assert specs["echo"].environments == ("development", "test")
    first = price_version_of({"pricing": {"input_per_million": 1, "output_per_million": 2}})
    assert first == price_version_of({"pricing": {"output_per_million": 2, "input_per_million": 1}})
    assert first != price_version_of({"pricing": {"input_per_million": 1, "output_per_million": 3}})
    assert price_version_of({"price_version": "2026-01", "pricing": {}}) == "2026-01"
    bad = tmp_path / "catalog.yaml"
    bad.write_text("models:\n  - {id: x, provider: echo, kind: chat, pricing: {input_per_million: 1.5}}\n")
    with pytest.raises(CatalogError, match=r"pricing\.input_per_million"):
        read_catalog(bad)
