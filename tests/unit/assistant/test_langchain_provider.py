"""The `langchain` provider with LangChain's own fake chat models: building, streaming, usage, errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from assistant.catalog import _availability
from assistant.providers import ProviderError, provider_for
from assistant.providers import langchain as provider
from assistant.reply import stream_reply
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import load_settings
from tests.unit.assistant.test_chat_graph import Sink

SETTINGS = load_settings(CREDITFLOW_ENV="test", OPENAI_API_KEY="sk-from-settings")
TURNS = [Turn(role="user", content="hello there model")]
SCRIPTED = "tests.support.langchain_models.ScriptedChatModel"
FAKE_LIST = "langchain_core.language_models.fake_chat_models.FakeListChatModel"
PRICES = {"input_per_million": 1_000_000, "output_per_million": 2_000_000}  # 1 and 2 micro a token


def spec(cls: str = SCRIPTED, **options: Any) -> ModelSpec:
    return ModelSpec(
        id=f"lc-{uuid.uuid4().hex[:8]}",  # a fresh entry: instances are cached per entry
        provider="langchain",
        kind="chat",
        capabilities={"context_length": 4096, "vision": True},
        pricing=PRICES,
        price_version="v1",
        options={"class": cls, **options},
    )


def test_usage_is_the_sum_of_the_chunks_usage_metadata() -> None:
    model = spec(kwargs={"reply": "one two three"})
    chunks = list(provider.stream(model, TURNS, max_tokens=50, settings=SETTINGS))
    assert "".join(c.text for c in chunks) == "one two three"
    assert chunks[-1].usage is not None
    # input tokens came on the first chunk, output tokens on the last (as Anthropic reports them)
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (3, 5)
    assert chunks[-1].usage.counted_by == "provider"
    assert chunks[-1].finish_reason == "stop"


def test_a_model_without_usage_is_billed_by_our_count_and_says_so() -> None:
    model = spec(FAKE_LIST, kwargs={"responses": ["words without any usage reported"]})
    result = stream_reply(model, TURNS, max_tokens=50, settings=SETTINGS, pricing=PRICES, sink=Sink())
    assert result["reply"] == "words without any usage reported"
    assert result["usage"] == {"input_tokens": 5 + 4, "output_tokens": 8, "counted_by": "estimate"}
    assert result["cost"] == 9 * 1 + 8 * 2


def test_cancel_closes_the_stream_and_bills_what_was_delivered() -> None:
    model = spec(kwargs={"reply": "a b c d e f g h i j", "usage": False})
    sink = Sink(stop_after=3)
    result = stream_reply(model, TURNS, max_tokens=50, settings=SETTINGS, pricing=PRICES, sink=sink)
    assert result["finish_reason"] == "canceled"
    assert result["reply"] == "a b"
    assert result["usage"]["output_tokens"] == 3  # the three pieces delivered, not the whole reply
    assert sink.spent == result["cost"]


@pytest.mark.parametrize(
    ("fail_with", "retryable"),
    [("429", True), ("503", True), ("timeout", True), ("ratelimit", True), ("400", False)],
)
def test_errors_map_to_retryable_or_final(fail_with: str, retryable: bool) -> None:
    model = spec(kwargs={"fail_with": fail_with})
    with pytest.raises(ProviderError) as caught:
        list(provider.stream(model, TURNS, max_tokens=50, settings=SETTINGS))
    assert caught.value.retryable is retryable


def test_langchains_fake_list_model_error_midway_keeps_the_delivered_text() -> None:
    model = spec(FAKE_LIST, kwargs={"responses": ["abcdef"], "error_on_chunk_number": 3})
    result = stream_reply(model, TURNS, max_tokens=50, settings=SETTINGS, pricing=PRICES, sink=Sink())
    assert (result["reply"], result["finish_reason"]) == ("abc", "interrupted")
    with pytest.raises(ProviderError) as caught:  # nothing delivered: raised, not billed
        list(
            provider.stream(
                spec(FAKE_LIST, kwargs={"responses": ["abc"], "error_on_chunk_number": 0}),
                TURNS,
                max_tokens=5,
                settings=SETTINGS,
            )
        )
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"class": "langchain_nowhere.ChatNothing"}, "langchain_nowhere is not installed"),
        ({"class": "langchain_core.messages.HumanMessage"}, "is not a BaseChatModel"),
        ({"class": SCRIPTED, "kwargs": {"delay_s": "slowly"}}, "refused its arguments"),
        ({"class": SCRIPTED, "kwargs": {"api_key": "sk-in-the-file"}}, "must come from `secrets`"),
        ({"class": SCRIPTED, "secrets": {"reply": "NO_SUCH_SETTING_XYZ"}}, "NO_SUCH_SETTING_XYZ"),
    ],
)
def test_a_model_that_cannot_be_built_is_unavailable_with_its_reason(
    options: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = spec(**options)
    with caplog.at_level("WARNING", logger="assistant.providers.langchain"):
        listed = _availability(model, SETTINGS)
    assert any(model.id in r.getMessage() and reason in r.getMessage() for r in caplog.records)  # logged once
    assert listed.available is False
    assert listed.unavailable_reason is not None
    assert reason in listed.unavailable_reason
    with pytest.raises(ProviderError) as caught:
        list(provider_for("langchain").stream(model, TURNS, max_tokens=5, settings=SETTINGS))
    assert not caught.value.retryable


def test_secrets_come_from_settings_by_name() -> None:
    model = spec(secrets={"reply": "OPENAI_API_KEY"})
    assert _availability(model, SETTINGS).available
    chunks = list(provider.stream(model, TURNS, max_tokens=50, settings=SETTINGS))
    assert "".join(c.text for c in chunks) == "sk-from-settings"


def test_an_image_reaches_the_model_as_a_standard_content_block() -> None:
    model = spec(kwargs={"reply": "a red square"})
    message = provider.image_message("what is this?", b"\x89PNG fake bytes", "image/png")
    chunks = list(provider.stream_messages(model, [message], max_tokens=20, settings=SETTINGS))
    assert "".join(c.text for c in chunks) == "a red square"
    seen = provider.build(model, SETTINGS, base="langchain_core.language_models.BaseChatModel").seen
    text, image = seen[-1][0]
    assert text == {"type": "text", "text": "what is this?"}
    assert (image["type"], image["mime_type"], image["base64"]) == (
        "image",
        "image/png",
        "iVBORyBmYWtlIGJ5dGVz",
    )
