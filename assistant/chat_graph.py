"""The chat turn as a LangGraph graph: build the prompt, then stream the model's reply.

Checkpoints are kept per conversation (thread id = conversation id), so a turn whose worker
died or whose provider failed resumes where it stopped, and a finished turn is never generated
twice for the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from assistant.catalog import ModelSpec
from assistant.pricing import chat_cost
from assistant.providers import ProviderError, Usage, provider_for
from assistant.transcript import Turn, token_estimate
from runtime.settings import Settings


class TurnSink(Protocol):
    """Where a turn reports: streamed text, the running cost, and whether to stop."""

    def token(self, text: str) -> None:
        """Publish a text delta."""

    def spend(self, total: int) -> None:
        """Book the turn's cost so far (micro-credits)."""

    def should_stop(self) -> bool:
        """True once the turn must end (canceled, or out of time)."""

    def stop_reason(self) -> str | None:
        """Why the turn stopped ("canceled", "time_limit"), once `should_stop()` said so."""


class TurnState(TypedDict, total=False):
    """What the graph keeps per conversation between checkpoints."""

    job_id: str
    turns: list[Turn]
    reply: str
    usage: dict[str, int]
    cost: int
    finish_reason: str


@dataclass(frozen=True)
class TurnContext:
    """Run-scoped inputs of one turn (not checkpointed)."""

    sink: TurnSink
    spec: ModelSpec
    pricing: Mapping[str, int]
    max_tokens: int
    settings: Settings
    build_prompt: Callable[[], list[Turn]]


def prompt_node(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
    """Fill the context window: recent messages and the relevant earlier ones, then the new message."""
    return {"turns": runtime.context.build_prompt()}


def respond_node(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
    """Stream the reply token by token, booking the cost of what was delivered as it goes."""
    context = runtime.context
    turns = state["turns"]
    provider = provider_for(context.spec.provider)
    text: list[str] = []
    usage: Usage | None = None
    finish = "stop"
    try:
        for chunk in provider.stream(
            context.spec, turns, max_tokens=context.max_tokens, settings=context.settings
        ):
            if chunk.text:
                text.append(chunk.text)
                context.sink.token(chunk.text)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
            context.sink.spend(_cost(context, turns, usage, len(text)))
            if context.sink.should_stop():
                finish = context.sink.stop_reason() or "canceled"
                break
    except ProviderError:
        if not text:
            raise  # nothing delivered: the saga retries (checkpointed before this node) or compensates
        finish = "interrupted"  # a stream cut midway is billed for what was delivered
    reply = "".join(text)
    stopped_early = finish in ("canceled", "interrupted", "time_limit")
    final = usage if usage and not stopped_early else _delivered(turns, usage, len(text))
    cost = chat_cost(context.pricing, input_tokens=final.input_tokens, output_tokens=final.output_tokens)
    context.sink.spend(cost)
    return {"reply": reply, "usage": final.as_json(), "cost": cost, "finish_reason": finish}


def _delivered(turns: list[Turn], usage: Usage | None, pieces: int) -> Usage:
    """Exact usage when the provider reported it for what was delivered, else an estimate of it."""
    if usage is not None and usage.output_tokens >= pieces:
        return usage
    input_tokens = usage.input_tokens if usage else sum(token_estimate(t["content"]) + 4 for t in turns)
    return Usage(input_tokens, pieces)


def _cost(context: TurnContext, turns: list[Turn], usage: Usage | None, pieces: int) -> int:
    delivered = _delivered(turns, usage, pieces)
    return chat_cost(
        context.pricing, input_tokens=delivered.input_tokens, output_tokens=delivered.output_tokens
    )


def build_graph(checkpointer: Any) -> Any:
    """The compiled turn graph: START -> prompt -> respond -> END, checkpointed by `checkpointer`."""
    graph = StateGraph(TurnState, context_schema=TurnContext)
    graph.add_node("prompt", prompt_node)
    graph.add_node("respond", respond_node)
    graph.add_edge(START, "prompt")
    graph.add_edge("prompt", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


def run_turn(graph: Any, *, conversation_id: str, job_id: str, context: TurnContext) -> TurnState:
    """Run (or resume) this job's turn of the conversation; returns the final state."""
    config = {"configurable": {"thread_id": conversation_id}}
    snapshot = graph.get_state(config)
    if snapshot.values.get("job_id") == job_id:
        if not snapshot.next:  # finished before the worker went away: bill it again, don't regenerate
            context.sink.spend(int(snapshot.values.get("cost", 0)))
            return snapshot.values  # type: ignore[no-any-return]
        return graph.invoke(None, config, context=context, durability="sync")  # type: ignore[no-any-return]
    initial: TurnState = {
        "job_id": job_id,
        "turns": [],
        "reply": "",
        "usage": {},
        "cost": 0,
        "finish_reason": "",
    }
    return graph.invoke(initial, config, context=context, durability="sync")  # type: ignore[no-any-return]
