"""The `chat` job kind: one conversation turn priced from the catalog, run by the LangGraph turn graph."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, select

from assistant import conversations, vectors
from assistant.chat_graph import TurnContext, build_graph, run_turn
from assistant.embeddings import available as embeddings_available
from assistant.memory import overflows, relevance, select_context
from assistant.providers import ProviderError
from assistant.specs import ModelSpec
from assistant.tables import messages
from assistant.transcript import Turn
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.jobs.kinds import JobKind
from orchestration.jobs.models import job_model
from orchestration.replies.model_reply import JobSink, reply_quote
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs


def open_turns(db: Connection, *, conversation_id: str, before: int | None = None) -> list[str]:
    """Jobs of the conversation's turns still queued or running (those before `before` when given)."""
    query = (
        select(jobs.c.id)
        .select_from(messages.join(jobs, messages.c.job_id == jobs.c.id))
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.role == "user",
            jobs.c.status.in_([QUEUED_SQL, RUNNING_SQL]),
        )
    )
    if before is not None:
        query = query.where(messages.c.position < before)
    return list(db.execute(query).scalars())


@functools.cache
def _graph() -> Any:
    # Compiled once per process. No checkpointer: the messages table is the conversation's record, a
    # retried turn rebuilds its prompt from it (one read), and a turn whose worker died is never resumed
    # (the user saw part of it; it ends failed). So nothing is written before the first upstream byte.
    return build_graph()


# A turn reads at most MEMORY_SCAN earlier messages and embeds at most MEMORY_EMBED_PER_TURN of those
# without a vector: its cost stays bounded however long the conversation grows (a soak of 300-turn
# conversations showed every turn slower than the last when all were read and embedded inline).
MEMORY_SCAN = 2000
MEMORY_EMBED_PER_TURN = 64
MEMORY_MODEL = "all-minilm-l6-v2"  # the catalog's local embedding model (vectors kept in message_vectors)


def _prompt(ctx: RunContext, spec: ModelSpec, kept: list[int]) -> Any:
    def build() -> list[Any]:
        conversation_id, before = ctx.params["conversation_id"], int(ctx.params["message_position"])
        with ctx.services.uow(autocommit=True) as db:
            earlier = conversations.recent(
                db, conversation_id=conversation_id, before=before, limit=MEMORY_SCAN
            )
        budget = min(int(ctx.params["prompt_tokens"]), spec.context_length - int(ctx.params["max_tokens"]))
        content, scores = str(ctx.params["content"]), None
        if (
            ctx.services.settings.MEMORY_EMBEDDINGS
            and embeddings_available()
            and overflows(earlier, new=content, budget=budget)
        ):
            # Only when the conversation outgrew its window, and each message is embedded once.
            with ctx.services.uow(autocommit=True) as db:
                known = vectors.stored(db, model=MEMORY_MODEL, message_ids=[row.id for row in earlier])
            scores, computed = relevance(
                earlier, new=content, stored=known, embed_limit=MEMORY_EMBED_PER_TURN
            )
            with ctx.services.uow() as db:
                vectors.store(db, model=MEMORY_MODEL, vectors=computed)
        chosen = select_context(earlier, new=content, budget=budget, relevance=scores)
        kept[:] = [row.position for row in chosen]
        return [*conversations.as_turns(chosen), Turn(role="user", content=content)]

    return build


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Run the turn graph (the previous turn has ended: its job started this one); provider errors
    become retry or compensation."""
    params = ctx.params
    base = {"conversation_id": params["conversation_id"], "model": params["model"]}
    spec = job_model(ctx)
    kept: list[int] = []
    context = TurnContext(
        sink=JobSink(ctx),
        spec=spec,
        pricing=params["pricing"],
        max_tokens=int(params["max_tokens"]),
        settings=ctx.services.settings,
        build_prompt=_prompt(ctx, spec, kept),
    )
    try:
        state = run_turn(_graph(), job_id=ctx.job_id, context=context)
    except ProviderError as exc:
        raise (RetryableError if exc.retryable else FinalError)(str(exc)) from exc
    return {
        **base,
        "reply": state["reply"],
        "usage": state["usage"],
        "cost": credits_text(min(int(state["cost"]), ctx.held)),
        "finish_reason": state["finish_reason"],
        "context_positions": kept,  # the earlier messages the model saw (memory), by position
    }


def on_settled(db: Connection, row: Row[Any]) -> None:
    """Append the reply (all of it, or what was delivered before a cancel) with the charge."""
    result = row.result or {}
    conversations.add_message(
        db,
        conversation_id=row.params["conversation_id"],
        position=int(row.params["reply_position"]),
        role="assistant",
        content=str(result.get("reply", "")),
        model=row.model,
        job_id=row.id,
        usage=result.get("usage"),
        cost=row.cost_charged,
        finish_reason=result.get("finish_reason"),
    )


CHAT = JobKind(
    name="chat",
    queue="interactive",
    price=reply_quote,
    run=run,
    model=lambda params: str(params["model"]),
    route=lambda params: str(params.get("queue", "interactive")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
    restartable=False,  # the user saw part of the reply: a lost worker ends the turn failed
    on_settled=on_settled,
)
