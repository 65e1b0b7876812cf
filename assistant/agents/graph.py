"""Agent tasks as LangGraph graphs: the graph, not the model, decides the steps (small models work)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from assistant.agents.nodes import (
    after_run,
    analysis_compute,
    analysis_narrate,
    code_plan,
    code_repair,
    code_run,
    code_write,
    research_gather,
    research_plan,
    research_synthesise,
)
from assistant.agents.state import KINDS, AgentContext, AgentState, after_step, total_steps
from assistant.agents.toolbox import research_tools, tool_calls, tool_node, tool_results

__all__ = ["KINDS", "AgentContext", "build_graph", "run_agent", "total_steps"]


def _planner(tools: Sequence[BaseTool]) -> Any:
    def plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        """The research plan, and its queries as calls of every tool (run next by the ToolNode)."""
        planned = research_plan(state, runtime)
        return {**planned, "messages": [tool_calls(tools, planned.get("queries") or [state["prompt"]])]}

    return plan


def build_graph(kind: str, checkpointer: Any = None, tools: Sequence[BaseTool] = ()) -> Any:
    """The compiled graph of an agent kind; with a checkpointer, a task run again resumes after its
    last finished node (see `run_agent`). `tools`: LangChain tools a research task calls beside ours."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    if kind == "research":
        toolbox = research_tools(tools)
        graph.add_node("tools", tool_node(toolbox))
        chain = [
            ("plan", _planner(toolbox)),
            ("tools", None),
            ("gather", research_gather),
            ("synthesise", research_synthesise),
        ]
    elif kind == "analysis":
        chain = [("compute", analysis_compute), ("narrate", analysis_narrate)]
    elif kind == "code":
        chain = [("plan", code_plan), ("write", code_write), ("run", code_run)]
        graph.add_node("repair", code_repair)
        graph.add_conditional_edges("repair", after_step, {"go": "run", "stop": END})
    else:
        raise ValueError(f"unknown agent kind {kind!r}")
    for name, node in chain:
        if node is not None:  # the ToolNode, added above
            graph.add_node(name, node)
    graph.add_edge(START, chain[0][0])
    for (name, _node), (following, _next) in itertools.pairwise(chain):
        graph.add_conditional_edges(name, after_step, {"go": following, "stop": END})
    last = chain[-1][0]
    if kind == "code":
        graph.add_conditional_edges(last, after_run, {"repair": "repair", "stop": END})
    else:
        graph.add_edge(last, END)
    return graph.compile(checkpointer=checkpointer)


def run_agent(
    graph: Any,
    *,
    kind: str,
    prompt: str,
    data: str,
    context: AgentContext,
    task_id: str,
    resume: bool = False,
) -> AgentState:
    """Run a task to its end (or its graceful stop); returns the final state.

    Checkpointed per task (thread id = `task_id`) after every node. With `resume` (a retry, or a
    redelivery after its worker died), a task that got past some nodes continues from there, and the
    cost of those nodes is booked again on this attempt's context (the charge is the whole task's)."""
    config = {"configurable": {"thread_id": task_id}}
    if resume:
        snapshot = graph.get_state(config)
        if snapshot.values.get("kind") == kind and snapshot.next:
            lines = list(snapshot.values.get("cost_lines") or [])
            if snapshot.next == ("gather",):  # the tools ran and charged; their lines come with gather
                lines += tool_results(snapshot.values.get("messages") or [])[2]
            done = sum(int(line["cost"]) for line in lines)
            context.sink.charge(done)
            return graph.invoke(None, config, context=context, durability="sync")  # type: ignore[no-any-return]
    initial: AgentState = {
        "kind": kind,
        "prompt": prompt,
        "data": data,
        "step": 0,
        "stopped": None,
        "cost_lines": [],
    }
    return graph.invoke(initial, config, context=context, durability="sync")  # type: ignore[no-any-return]
