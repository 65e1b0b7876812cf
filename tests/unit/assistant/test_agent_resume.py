"""An agent task run again (a retry, or a redelivery after its worker died) resumes after its last node."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from assistant.agents import state as agent_state
from assistant.agents.graph import AgentContext, build_graph, run_agent
from assistant.providers import Chunk, ProviderError, provider_for
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings, load_settings

PRICING = {"input_per_million": 1_000_000, "output_per_million": 2_000_000}
SPEC = ModelSpec(id="echo", provider="echo", kind="chat", capabilities={}, pricing=PRICING, price_version="v")


class Sink:
    def __init__(self) -> None:
        self.spent = 0

    def progress(self, stage: str, step: int, total: int) -> None:
        pass

    def charge(self, amount: int) -> int:
        self.spent += amount
        return self.remaining()

    def remaining(self) -> int:
        return 10**12 - self.spent

    def should_stop(self) -> bool:
        return False


class FailsOnce:
    """Echo, but the `fail_on`-th call fails before any text (a provider's 503)."""

    def __init__(self, fail_on: int) -> None:
        self.calls, self.fail_on = 0, fail_on

    def stream(
        self,
        spec: ModelSpec,
        turns: Sequence[Turn],
        *,
        max_tokens: int,
        settings: Settings,
        options: object = None,
    ) -> Iterator[Chunk]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise ProviderError("503", retryable=True)
        yield from provider_for("echo").stream(spec, turns, max_tokens=max_tokens, settings=settings)


def context(sink: Sink) -> AgentContext:
    return AgentContext(
        sink=sink, spec=SPEC, pricing=PRICING, max_tokens=32, settings=load_settings(),
        search_conversations=lambda _query, _limit: [], search_web=lambda _query, _limit: [],
    )


def run(path: Path, sink: Sink, *, resume: bool) -> Any:
    graph = build_graph("research", SqliteSaver(sqlite3.connect(path, check_same_thread=False)))
    return run_agent(graph, kind="research", prompt="why is the sky blue", data="", context=context(sink),
                     task_id="job-1", resume=resume)


def test_a_task_resumes_after_its_last_finished_node_and_is_charged_for_the_whole_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = run(tmp_path / "reference.sqlite", Sink(), resume=False)  # the same task, uninterrupted
    model = FailsOnce(fail_on=2)  # the plan's call succeeds, the synthesis's first call fails
    monkeypatch.setattr(agent_state, "provider_for", lambda _name: model)
    path = tmp_path / "task.sqlite"
    first = Sink()
    with pytest.raises(ProviderError):
        run(path, first, resume=False)
    again = Sink()  # the next attempt: a new context, a new saver on the same store
    state = run(path, again, resume=True)
    assert model.calls == 3  # plan once, synthesis twice: the plan was not asked again
    assert state["report"] == reference["report"]
    assert again.spent == sum(int(line["cost"]) for line in state["cost_lines"])  # the plan's cost included
    nodes = [line["node"] for line in state["cost_lines"]]
    assert nodes == [line["node"] for line in reference["cost_lines"]]
