"""The turn graph: streams and bills exact usage, keeps what a cancel left, raises errors to retry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from assistant import reply
from assistant.chat_graph import TurnContext, build_graph, run_turn
from assistant.providers import Chunk, ProviderError, Usage, provider_for
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings, load_settings

PRICING = {"input_per_million": 1_000_000, "output_per_million": 2_000_000}
SPEC = ModelSpec(id="echo", provider="echo", kind="chat", capabilities={}, pricing=PRICING, price_version="v")


class Sink:
    def __init__(self, stop_after: int | None = None) -> None:
        self.tokens: list[str] = []
        self.spent = 0
        self.stop_after = stop_after

    def token(self, text: str) -> None:
        self.tokens.append(text)

    def spend(self, total: int) -> None:
        self.spent = max(self.spent, total)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.tokens) >= self.stop_after

    def stop_reason(self) -> str | None:
        return "canceled" if self.should_stop() else None


class Flaky:
    """Echo, but the first call fails before any text (a 503 from a provider)."""

    def __init__(self) -> None:
        self.calls = 0

    def stream(
        self,
        spec: ModelSpec,
        turns: Sequence[Turn],
        *,
        max_tokens: int,
        settings: Settings,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        self.calls += 1
        if self.calls == 1:
            raise ProviderError("503", retryable=True)
        yield from provider_for("echo").stream(spec, turns, max_tokens=max_tokens, settings=settings)


def context(sink: Sink, prompts: list[int], content: str = "one two three") -> TurnContext:
    def build() -> list[Turn]:
        prompts.append(1)
        return [Turn(role="user", content=content)]

    return TurnContext(
        sink=sink, spec=SPEC, pricing=PRICING, max_tokens=50, settings=load_settings(), build_prompt=build
    )


def test_turn_streams_and_bills_exact_usage() -> None:
    sink, prompts = Sink(), []
    state = run_turn(build_graph(), job_id="j1", context=context(sink, prompts))
    assert state["reply"] == "You said: one two three" == "".join(sink.tokens)
    usage = state["usage"]
    assert usage["output_tokens"] == 5
    assert state["cost"] == sink.spent == usage["input_tokens"] * 1 + usage["output_tokens"] * 2


def test_a_provider_error_before_any_text_is_raised_for_the_saga_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flaky = Flaky()
    monkeypatch.setattr(reply, "provider_for", lambda _name: flaky)  # the turn streams through reply.py
    prompts: list[int] = []
    with pytest.raises(ProviderError):
        run_turn(build_graph(), job_id="j1", context=context(Sink(), prompts))
    sink = Sink()  # the saga's retry: the prompt is built again from the messages
    state = run_turn(build_graph(), job_id="j1", context=context(sink, prompts))
    assert state["reply"] == "You said: one two three" == "".join(sink.tokens)
    assert (len(prompts), flaky.calls) == (2, 2)


def test_cancel_keeps_what_was_delivered() -> None:
    sink = Sink(stop_after=2)
    state = run_turn(build_graph(), job_id="j", context=context(sink, []))
    assert state["finish_reason"] == "canceled"
    assert state["reply"] == "You said: "
    assert state["usage"]["output_tokens"] == 2
    assert Usage(1, 2).as_json() == {"input_tokens": 1, "output_tokens": 2}
