"""The `openai` provider against a local server speaking the chat-completions wire protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant.providers import ProviderError, provider_for
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings, load_settings
from tests.support.openai_server import REPLY, openai_server

TURNS = [Turn(role="user", content="say hello please")]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Settings, list[dict[str, object]]]]:
    with openai_server() as (base, received):
        yield load_settings(OPENAI_BASE_URL=base, OPENAI_API_KEY="sk-test", OPENAI_TIMEOUT_S=5), received


def model(upstream: str) -> ModelSpec:
    return ModelSpec(
        id="remote",
        provider="openai",
        kind="chat",
        price_version="v",
        options={"upstream": upstream},
        capabilities={"context_length": 8192},
        pricing={"input_per_million": 1, "output_per_million": 1},
    )


def test_streams_text_and_takes_usage_from_the_last_chunk(endpoint: tuple[Settings, list]) -> None:
    settings, received = endpoint
    provider = provider_for("openai")
    assert provider.available(model("fake"), settings)
    chunks = list(provider.stream(model("fake"), TURNS, max_tokens=50, settings=settings))
    assert "".join(c.text for c in chunks) == "".join(REPLY)
    usages = [c.usage for c in chunks if c.usage]
    assert len(usages) == 1
    assert usages[0].output_tokens == len(REPLY)
    assert usages[0].input_tokens == 7
    assert chunks[-1].finish_reason == "stop"
    request = received[-1]
    assert request["auth"] == "Bearer sk-test"
    assert request["body"]["stream"] is True
    assert request["body"]["stream_options"] == {"include_usage": True}
    assert request["body"]["messages"] == [{"role": "user", "content": "say hello please"}]


def test_max_tokens_is_sent_and_reported_as_length(endpoint: tuple[Settings, list]) -> None:
    settings, received = endpoint
    chunks = list(provider_for("openai").stream(model("fake"), TURNS, max_tokens=2, settings=settings))
    assert "".join(c.text for c in chunks) == "Hello from"
    assert chunks[-1].finish_reason == "length"
    body = received[-1]["body"]
    assert 2 in (body.get("max_tokens"), body.get("max_completion_tokens"))


@pytest.mark.parametrize(
    ("upstream", "retryable"),
    [("error-429", True), ("error-500", True), ("error-400", False), ("refuse", False)],
)
def test_errors_map_to_retryable_or_final(
    endpoint: tuple[Settings, list], upstream: str, retryable: bool
) -> None:
    settings, _ = endpoint
    with pytest.raises(ProviderError) as caught:
        list(provider_for("openai").stream(model(upstream), TURNS, max_tokens=10, settings=settings))
    assert caught.value.retryable is retryable


def test_unreachable_or_unconfigured_endpoint() -> None:
    unset = load_settings(OPENAI_BASE_URL="", OPENAI_API_KEY="")
    assert not provider_for("openai").available(model("fake"), unset)
    dead = load_settings(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="k", OPENAI_TIMEOUT_S=1)
    assert not provider_for("openai").available(model("fake"), dead)
    with pytest.raises(ProviderError) as caught:
        list(provider_for("openai").stream(model("fake"), TURNS, max_tokens=5, settings=dead))
    assert caught.value.retryable


def test_concurrent_availability_probes_of_one_endpoint_share_one_request() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from assistant.providers import openai as provider

    with openai_server(models_delay_s=0.3) as (base, received):
        settings = load_settings(OPENAI_BASE_URL=base, OPENAI_API_KEY="sk-test", OPENAI_TIMEOUT_S=5)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _i: provider.available(model("fake"), settings), range(8)))
        assert answers == [True] * 8
        assert [request["get"] for request in received] == ["/v1/models"]  # one probe answered all eight


def test_image_parts_are_sent_as_multimodal_content(endpoint: tuple[Settings, list]) -> None:
    import base64

    from tests.support.images import picture

    settings, received = endpoint
    data = base64.b64encode(picture(96, 64, "PNG")).decode()
    parts = [
        {"type": "text", "text": "what is it"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}", "detail": "high"}},
    ]
    turn = Turn(role="user", content="what is it", parts=parts)
    provider = provider_for("openai")
    chunks = list(provider.stream(model("fake-vision"), [turn], max_tokens=20, settings=settings))
    assert "".join(c.text for c in chunks) == "I see 96x64/PNG."
    assert received[-1]["body"]["messages"] == [{"role": "user", "content": parts}]
    usage = next(c.usage for c in chunks if c.usage)
    assert usage.input_tokens == 3 + 4 + 85 + 170  # text words, turn overhead, one 512-pixel tile
