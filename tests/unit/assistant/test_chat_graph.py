"""The turn graph: streams and bills, resumes from its checkpoint after a restart, never regenerates."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from assistant import chat_graph
from assistant.catalog import ModelSpec
from assistant.chat_graph import TurnContext, build_graph, run_turn
from assistant.providers import Chunk, ProviderError, Usage, provider_for
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
        self, spec: ModelSpec, turns: Sequence[Turn], *, max_tokens: int, settings: Settings
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


def graph_on(path: Path) -> Any:
    return build_graph(SqliteSaver(sqlite3.connect(path, check_same_thread=False)))


def test_turn_streams_and_bills_exact_usage(tmp_path: Path) -> None:
    sink, prompts = Sink(), []
    state = run_turn(
        graph_on(tmp_path / "c.sqlite"), conversation_id="c1", job_id="j1", context=context(sink, prompts)
    )
    assert state["reply"] == "You said: one two three" == "".join(sink.tokens)
    usage = state["usage"]
    assert usage["output_tokens"] == 5
    assert state["cost"] == sink.spent == usage["input_tokens"] * 1 + usage["output_tokens"] * 2


def test_a_failed_turn_resumes_from_its_checkpoint_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky()
    monkeypatch.setattr(chat_graph, "provider_for", lambda _name: flaky)
    path, prompts = tmp_path / "c.sqlite", []
    with pytest.raises(ProviderError):
        run_turn(graph_on(path), conversation_id="c1", job_id="j1", context=context(Sink(), prompts))
    sink = Sink()  # a new process: a new saver on the same file
    state = run_turn(graph_on(path), conversation_id="c1", job_id="j1", context=context(sink, prompts))
    assert state["reply"] == "You said: one two three"
    assert len(prompts) == 1  # the prompt node ran once; only the reply was retried
    again = Sink()
    replay = run_turn(graph_on(path), conversation_id="c1", job_id="j1", context=context(again, prompts))
    assert replay["reply"] == state["reply"]
    assert flaky.calls == 2  # a finished turn is never generated twice
    assert again.spent == state["cost"]
    state = run_turn(
        graph_on(path), conversation_id="c1", job_id="j2", context=context(Sink(), prompts, "next")
    )
    assert state["reply"] == "You said: next"


def test_cancel_keeps_what_was_delivered(tmp_path: Path) -> None:
    sink = Sink(stop_after=2)
    state = run_turn(
        graph_on(tmp_path / "c.sqlite"), conversation_id="c", job_id="j", context=context(sink, [])
    )
    assert state["finish_reason"] == "canceled"
    assert state["reply"] == "You said: "
    assert state["usage"]["output_tokens"] == 2
    assert Usage(1, 2).as_json() == {"input_tokens": 1, "output_tokens": 2}
