"""What every agent node shares: the state, the run context, and the budget-checked model call.

Every model step checks the task's remaining budget against its worst case (prompt token bound +
max_tokens at the frozen prices) before it calls the model, and stops the task gracefully
(`stopped: "budget"`) when it doesn't fit. Each node reports progress and books one cost line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from assistant.pricing import chat_cost, chat_hold
from assistant.providers import Usage, provider_for
from assistant.specs import ModelSpec
from assistant.transcript import Turn, pieces, token_bound, transcript
from runtime.settings import Settings

FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
MAX_QUERIES = 3
MAX_SOURCES = 8
KINDS = ("research", "code", "analysis")


class AgentSink(Protocol):
    """Where an agent reports: progress, cost, budget and cancellation."""

    def progress(self, stage: str, step: int, total: int) -> None:
        """Publish a progress event."""

    def charge(self, amount: int) -> int:
        """Book a cost (micro-credits)."""

    def remaining(self) -> int:
        """Micro-credits left under the task's cap."""

    def should_stop(self) -> bool:
        """True once the user canceled."""


class AgentState(TypedDict, total=False):
    """What flows between the nodes; `cost_lines` accumulates one line per node."""

    kind: str
    prompt: str
    data: str
    step: int
    stopped: str | None
    cost_lines: Annotated[list[dict[str, Any]], operator.add]
    messages: Annotated[list[AnyMessage], add_messages]  # research: the tool calls and their results
    plan: str
    queries: list[str]
    sources: list[dict[str, Any]]
    warnings: list[str]
    report: str
    code: str
    code_source: str
    run: dict[str, Any]
    repairs: int
    stats: dict[str, Any]
    narrative: str


@dataclass(frozen=True)
class AgentContext:
    """Run-scoped inputs (not state): where to report, the model and its frozen prices, the tools."""

    sink: AgentSink
    spec: ModelSpec
    pricing: Mapping[str, int]
    max_tokens: int
    settings: Settings
    search_conversations: Callable[[str, int], list[dict[str, Any]]]
    search_web: Callable[[str, int], list[dict[str, Any]]]


def total_steps(kind: str, settings: Settings) -> int:
    """How many node runs a task of `kind` may take (progress `total`)."""
    if kind == "code":
        return 3 + 2 * settings.AGENT_REPAIR_ATTEMPTS
    return {"research": 3, "analysis": 2}[kind]


def cost_line(node: str, *, cost: int = 0, usage: Usage | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "node": node,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cost": cost,
        **extra,
    }


def enter_node(state: AgentState, runtime: Runtime[AgentContext], stage: str) -> int:
    step = int(state.get("step", 0)) + 1
    runtime.context.sink.progress(stage, step, total_steps(str(state["kind"]), runtime.context.settings))
    return step


def fit_prompt(text: str, context: AgentContext) -> list[Turn]:
    """The prompt as one user turn, clipped so its token bound leaves room for max_tokens."""
    room = context.spec.context_length - context.max_tokens - token_bound([Turn(role="user", content="")])
    clipped = text.encode()[: max(0, room)].decode(errors="ignore")
    return [Turn(role="user", content=clipped)]


def ask_model(
    node: str, text: str, runtime: Runtime[AgentContext]
) -> tuple[str | None, dict[str, Any], str | None]:
    """One model call under the cap: (reply or None when stopped, its cost line, stop reason)."""
    context = runtime.context
    turns = fit_prompt(text, context)
    worst = chat_hold(context.pricing, prompt_tokens=token_bound(turns), max_tokens=context.max_tokens)
    if context.sink.should_stop():
        return None, cost_line(node, skipped="canceled"), "canceled"
    if worst > context.sink.remaining():
        return None, cost_line(node, skipped="budget", worst_case=worst), "budget"
    provider = provider_for(context.spec.provider)
    parts: list[str] = []
    usage: Usage | None = None
    stopped = None
    for chunk in provider.stream(
        context.spec, turns, max_tokens=context.max_tokens, settings=context.settings
    ):
        parts.append(chunk.text)
        usage = chunk.usage or usage
        if context.sink.should_stop():
            stopped = "canceled"
            break
    reply = "".join(parts)
    if usage is None or (stopped and usage.output_tokens < len(pieces(reply))):
        usage = Usage(len(pieces(transcript(turns))), len(pieces(reply)))  # estimate what was delivered
    cost = chat_cost(context.pricing, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    context.sink.charge(cost)
    return reply, cost_line(node, cost=cost, usage=usage), stopped


def step_result(step: int, line: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"step": step, "cost_lines": [line], "stopped": reason}


def after_step(state: AgentState) -> str:
    return "stop" if state.get("stopped") else "go"


