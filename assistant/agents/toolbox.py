"""The research agent's tools as LangChain tools (`langchain_core.tools`), run by LangGraph's ToolNode.

Our two tools (the user's conversations, the web) read the run's context through LangGraph's
runtime, so the compiled graph is shared by every task of a process. Any LangChain tool that takes one
text argument plugs in beside them (AGENT_TOOLS: import paths). Each call is checked against the task's
budget, charged its price (`metadata["cost"]`, micro-credits; 0 when unset) and published as a progress
event (`stage: "tool:<name>"`, its cost in `credits_spent`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolNode
from langgraph.runtime import get_runtime

from assistant.agents.state import MAX_SOURCES, AgentContext, total_steps
from assistant.providers.langchain import BuildError, import_class

_sink_lock = threading.Lock()  # ToolNode runs one task's calls in parallel threads


@tool(response_format="content_and_artifact")
def search_conversations(query: str) -> tuple[str, list[dict[str, Any]]]:
    """Search the user's own earlier conversations for messages about `query`."""
    sources = get_runtime(AgentContext).context.search_conversations(query, MAX_SOURCES)
    return f"{len(sources)} messages found", sources


@tool(response_format="content_and_artifact")
def search_web(query: str) -> tuple[str, list[dict[str, Any]]]:
    """Search the web for `query` (nothing when no search provider is configured)."""
    sources = get_runtime(AgentContext).context.search_web(query, MAX_SOURCES)
    return f"{len(sources)} pages found", sources


def load_tools(paths: str) -> list[BaseTool]:
    """The LangChain tools named by import path (an instance, or a class built without arguments)."""
    found: list[BaseTool] = []
    for path in filter(None, (part.strip() for part in paths.split(","))):
        target = import_class(path)
        try:
            made = target() if isinstance(target, type) else target
        except Exception as exc:  # a class that needs arguments: whatever it raises
            raise BuildError(f"{path} can't be built without arguments: {exc}") from exc
        if not isinstance(made, BaseTool):
            raise BuildError(f"{path} is not a LangChain tool")
        found.append(made)
    return found


def research_tools(extra: Sequence[BaseTool] = ()) -> list[BaseTool]:
    """Our tools, then the ones that plugged in."""
    return [search_conversations, search_web, *extra]


def query_field(candidate: BaseTool) -> str | None:
    """The one text argument a query fills (None: the tool does not fit a query)."""
    fields = list(candidate.args)
    return fields[0] if len(fields) == 1 else None


def tool_calls(tools: Sequence[BaseTool], queries: Sequence[str]) -> AIMessage:
    """One call of every fitting tool per query, as the message a tool-calling model would write."""
    calls = [
        {"name": candidate.name, "args": {field: query}, "id": f"{candidate.name}-{index}"}
        for index, query in enumerate(queries)
        for candidate in tools
        if (field := query_field(candidate)) is not None
    ]
    return AIMessage(content="", tool_calls=calls)  # type: ignore[arg-type]


def price(candidate: BaseTool | None) -> int:
    """A tool's price per call in micro-credits."""
    return int((candidate.metadata or {}).get("cost", 0)) if candidate is not None else 0


def _metered(request: Any, execute: Callable[[Any], Any]) -> Any:
    context, state = request.runtime.context, request.state
    name, cost = request.tool_call["name"], price(request.tool)
    with _sink_lock:
        if context.sink.should_stop() or cost > context.sink.remaining():
            reason = "canceled" if context.sink.should_stop() else "budget"
            return ToolMessage(
                content=f"not run: {reason}", tool_call_id=request.tool_call["id"], status="error"
            )
    result = execute(request)
    with _sink_lock:
        context.sink.charge(cost)
        step = int(state.get("step", 0)) if isinstance(state, dict) else 0
        context.sink.progress(f"tool:{name}", step, total_steps(str(state["kind"]), context.settings))
    if isinstance(result, ToolMessage):
        result.response_metadata = {**result.response_metadata, "cost": cost}
    return result


def tool_node(tools: Sequence[BaseTool]) -> ToolNode:
    """LangGraph's ToolNode over `tools`: errors become error messages (the agent goes on), calls metered."""
    return ToolNode(list(tools), handle_tool_errors=True, wrap_tool_call=_metered)


def tool_results(messages: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """From the ToolNode's messages: the sources found, the failures, and each call's cost line."""
    sources: dict[str, dict[str, Any]] = {}
    warnings, lines = [], []
    for message in messages:
        if not isinstance(message, ToolMessage):
            continue
        cost = int(message.response_metadata.get("cost", 0))
        lines.append({"node": f"tool:{message.name}", "input_tokens": 0, "output_tokens": 0, "cost": cost})
        if message.status == "error":
            warnings.append(f"{message.name} failed: {str(message.content)[:300]}")
            continue
        found = message.artifact if isinstance(message.artifact, list) else []
        if not found and message.content and message.name not in ("search_conversations", "search_web"):
            found = [
                {
                    "type": "tool",
                    "title": message.name,
                    "ref": f"tool:{message.tool_call_id}",
                    "excerpt": str(message.content)[:400],
                }
            ]
        for source in found:
            if isinstance(source, dict) and source.get("ref"):
                sources.setdefault(str(source["ref"]), source)
    return list(sources.values())[:MAX_SOURCES], warnings, lines
