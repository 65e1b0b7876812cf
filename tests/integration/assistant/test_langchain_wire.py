"""`langchain_openai.ChatOpenAI` through the `langchain` provider against the local OpenAI-compatible server:
what goes on the wire (text and image turns), usage, finish reasons and error mapping."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from assistant.providers import ProviderError
from assistant.providers import langchain as provider
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings, load_settings
from tests.support.openai_server import openai_server


def _png() -> bytes:
    """A real 2x3 PNG (the test server decodes the image parts it receives)."""
    out = io.BytesIO()
    Image.new("RGB", (2, 3), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with openai_server() as served:
        yield served


def chat_openai(base: str, upstream: str) -> ModelSpec:
    kwargs = {"model": upstream, "base_url": base, "max_retries": 0, "stream_usage": True}
    return ModelSpec(
        id=f"lc-wire-{uuid.uuid4().hex[:6]}",
        provider="langchain",
        kind="chat",
        capabilities={"context_length": 8192, "vision": True},
        pricing={"input_per_million": 1, "output_per_million": 1},
        price_version="v",
        options={
            "class": "langchain_openai.ChatOpenAI",
            "kwargs": kwargs,
            "secrets": {"api_key": "OPENAI_API_KEY"},
        },
    )


SETTINGS: Settings = load_settings(OPENAI_API_KEY="sk-wire")


def test_an_image_goes_out_as_a_data_url_beside_the_text(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    base, received = endpoint
    message = provider.image_message("what is in this picture?", PNG, "image/png")
    chunks = list(
        provider.stream_messages(chat_openai(base, "fake"), [message], max_tokens=20, settings=SETTINGS)
    )
    assert "".join(c.text for c in chunks) == "I see 2x3/PNG."  # the server decoded the bytes we sent
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens == 1
    text, image = received[-1]["body"]["messages"][0]["content"]
    assert text == {"type": "text", "text": "what is in this picture?"}
    assert image["type"] == "image_url"
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert received[-1]["auth"] == "Bearer sk-wire"


def test_max_tokens_is_sent_and_a_cut_reply_is_length(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    base, received = endpoint
    turns = [
        Turn(role="user", content="hi"),
        Turn(role="assistant", content="hello"),
        Turn(role="user", content="go"),
    ]
    chunks = list(provider.stream(chat_openai(base, "fake"), turns, max_tokens=2, settings=SETTINGS))
    assert "".join(c.text for c in chunks) == "Hello from"
    assert chunks[-1].finish_reason == "length"
    body = received[-1]["body"]
    assert body["max_completion_tokens"] == 2
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("upstream", "retryable"),
    [("error-429", True), ("error-500", True), ("error-400", False), ("refuse", False)],
)
def test_upstream_errors_map_to_retryable_or_final(
    endpoint: tuple[str, list[dict[str, Any]]], upstream: str, retryable: bool
) -> None:
    with pytest.raises(ProviderError) as caught:
        list(
            provider.stream(
                chat_openai(endpoint[0], upstream),
                [Turn(role="user", content="x")],
                max_tokens=5,
                settings=SETTINGS,
            )
        )
    assert caught.value.retryable is retryable
