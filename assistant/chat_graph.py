"""The chat turn as a LangGraph graph: build the prompt, then stream the model's reply.

The graph keeps no checkpoints (orchestration/replies/chat.py says why): a turn is one short pass, and the
conversation's record is its messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from assistant.reply import ReplySink, stream_reply
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings

TurnSink = ReplySink


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
    return dict(
        stream_reply(
            context.spec, state["turns"], max_tokens=context.max_tokens, settings=context.settings,
            pricing=context.pricing, sink=context.sink,
        )
    )


def build_graph(checkpointer: Any = None) -> Any:
    """The compiled turn graph: START -> prompt -> respond -> END (checkpointed if given a saver)."""
    graph = StateGraph(TurnState, context_schema=TurnContext)
    graph.add_node("prompt", prompt_node)
    graph.add_node("respond", respond_node)
    graph.add_edge(START, "prompt")
    graph.add_edge("prompt", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


def run_turn(graph: Any, *, job_id: str, context: TurnContext) -> TurnState:
    """Run this job's turn; returns the final state."""
    initial: TurnState = {
        "job_id": job_id,
        "turns": [],
        "reply": "",
        "usage": {},
        "cost": 0,
        "finish_reason": "",
    }
    return graph.invoke(initial, context=context)  # type: ignore[no-any-return]
