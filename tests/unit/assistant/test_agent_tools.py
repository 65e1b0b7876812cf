"""The research agent's LangChain tools under LangGraph's ToolNode: sources, failures, plug-ins, costs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from assistant.agents.graph import build_graph, run_agent
from assistant.agents.toolbox import load_tools
from assistant.agents.tools import SearchError
from assistant.providers.langchain import BuildError
from tests.unit.assistant.test_agent_resume import Sink, context


class Recorder(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []

    def progress(self, stage: str, step: int, total: int) -> None:
        self.events.append((stage, self.spent))


def research(sink: Recorder, *, tools: str = "", web: Any = None) -> Any:
    def conversations(query: str, limit: int) -> list[dict[str, Any]]:
        return [
            {"type": "conversation", "title": "notes", "ref": "conversation:c1#message:m1", "excerpt": query}
        ]

    def failing_web(_query: str, _limit: int) -> list[dict[str, Any]]:
        raise SearchError("web search failed: 503")

    ctx = replace(context(sink), search_conversations=conversations, search_web=web or failing_web)
    graph = build_graph("research", InMemorySaver(), tools=load_tools(tools))
    return run_agent(graph, kind="research", prompt="what is a glossary", data="", context=ctx, task_id="t")


def test_every_query_goes_through_every_tool_and_each_call_is_a_progress_event_with_its_cost() -> None:
    sink = Recorder()
    state = research(sink, tools="tests.support.langchain_models.glossary")
    calls = [stage for stage, _spent in sink.events if stage.startswith("tool:")]
    queries = len(state["queries"])
    assert sorted(set(calls)) == ["tool:glossary", "tool:search_conversations", "tool:search_web"]
    assert len(calls) == 3 * queries
    lines = [line for line in state["cost_lines"] if line["node"] == "tool:glossary"]
    assert [line["cost"] for line in lines] == [7] * queries
    assert sink.spent == sum(int(line["cost"]) for line in state["cost_lines"])  # tools charged once each
    refs = [source["ref"] for source in state["sources"]]
    assert "conversation:c1#message:m1" in refs  # our tool's artifact
    assert any(ref.startswith("tool:glossary") for ref in refs)  # the plug-in tool's answer, as a source
    assert state["warnings"]
    assert all("search_web failed" in w for w in state["warnings"])  # the agent went on
    assert "Sources:" in state["report"]


def test_a_tool_that_does_not_fit_a_query_is_not_called_and_a_bad_path_is_refused() -> None:
    sink = Recorder()
    state = research(sink, tools="tests.support.langchain_models.two_arguments", web=lambda _q, _l: [])
    assert not any(stage == "tool:two_arguments" for stage, _spent in sink.events)
    assert state["warnings"] == []
    with pytest.raises(BuildError):
        load_tools("tests.support.langchain_models.UpstreamError")
