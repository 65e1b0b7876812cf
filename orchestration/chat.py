"""The `chat` job kind: one conversation turn priced from the catalog, run by the LangGraph turn graph."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.orm import Session

from assistant import conversations
from assistant.catalog import ModelSpec
from assistant.chat_graph import TurnContext, build_graph, run_turn
from assistant.checkpoints import saver_for
from assistant.embeddings import available as embeddings_available
from assistant.memory import fill_context, overflows, relevance
from assistant.pricing import chat_hold
from assistant.providers import ProviderError
from assistant.tables import messages
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.job_models import job_model
from orchestration.kinds import JobKind, Quote, register
from orchestration.tables import jobs
from runtime.db import transaction

WAIT_POLL_S = 0.2
RESTART_EVERY_S = 10.0
_graphs: dict[tuple[int, str], Any] = {}
_graphs_lock = threading.Lock()


def price(params: Mapping[str, Any]) -> Quote:
    """The worst case at the prices frozen into the params: prompt token bound + max_tokens."""
    pricing = params["pricing"]
    amount = chat_hold(
        pricing, prompt_tokens=int(params["prompt_tokens"]), max_tokens=int(params["max_tokens"])
    )
    details = {
        "model": params["model"],
        "prompt_tokens": int(params["prompt_tokens"]),
        "max_tokens": int(params["max_tokens"]),
        **{k: int(v) for k, v in pricing.items()},
    }
    return Quote(amount=amount, price_version=str(params["price_version"]), details=details)


@dataclass
class _Sink:
    """Adapts the job's RunContext to what the turn graph reports to."""

    ctx: RunContext

    def token(self, text: str) -> None:
        self.ctx.token(text)

    def spend(self, total: int) -> None:
        if total > self.ctx.spent:
            self.ctx.charge(total - self.ctx.spent)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def open_turns(session: Session, *, conversation_id: str, before: int | None = None) -> list[str]:
    """Jobs of the conversation's turns still queued or running (those before `before` when given)."""
    query = (
        select(jobs.c.id)
        .select_from(messages.join(jobs, messages.c.job_id == jobs.c.id))
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.role == "user",
            jobs.c.status.in_(("queued", "running")),
        )
    )
    if before is not None:
        query = query.where(messages.c.position < before)
    return list(session.execute(query).scalars())


def _wait_for_earlier_turns(ctx: RunContext) -> bool:
    """Double texting: queue behind the conversation's earlier replies; False if canceled meanwhile."""
    deadline = time.monotonic() + ctx.services.settings.CHAT_BUSY_WAIT_S
    announced = False
    next_restart = time.monotonic() + RESTART_EVERY_S
    while True:
        with ctx.services.sessions() as session:
            waiting = open_turns(
                session,
                conversation_id=ctx.params["conversation_id"],
                before=int(ctx.params["message_position"]),
            )
        if not waiting:
            if announced:
                ctx.restart_time_limit()  # the reply's time limit counts from when it can start
            return True
        if ctx.should_stop():
            return False
        if time.monotonic() > deadline:
            raise RetryableError("the conversation's previous reply is still running")
        if not announced:
            ctx.progress("waiting for the previous reply", 0, 1)
            announced = True
        if time.monotonic() >= next_restart:
            ctx.restart_time_limit()  # still waiting, not overrunning: keep the reaper off
            next_restart = time.monotonic() + RESTART_EVERY_S
        time.sleep(WAIT_POLL_S)


def _graph(database_url: str) -> Any:
    import os

    key = (os.getpid(), database_url)
    with _graphs_lock:
        if key not in _graphs:
            _graphs[key] = build_graph(saver_for(database_url))
        return _graphs[key]


def _prompt(ctx: RunContext, spec: ModelSpec) -> Any:
    def build() -> list[Any]:
        with ctx.services.sessions() as session:
            earlier = conversations.history(
                session,
                conversation_id=ctx.params["conversation_id"],
                before=int(ctx.params["message_position"]),
            )
        budget = min(int(ctx.params["prompt_tokens"]), spec.context_length - int(ctx.params["max_tokens"]))
        content, scores = str(ctx.params["content"]), None
        if (
            ctx.services.settings.MEMORY_EMBEDDINGS
            and embeddings_available()
            and overflows(earlier, new=content, budget=budget)
        ):
            scores, computed = relevance(earlier, new=content)
            with transaction(ctx.services.sessions) as session:
                conversations.store_embeddings(session, computed)
        return fill_context(earlier, new=content, budget=budget, relevance=scores)

    return build


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Wait for earlier turns, then run the turn graph; provider errors become retry or compensation."""
    params = ctx.params
    base = {"conversation_id": params["conversation_id"], "model": params["model"]}
    if not _wait_for_earlier_turns(ctx):
        return {
            **base,
            "reply": "",
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "cost": "0",
            "finish_reason": "canceled",
        }
    spec = job_model(ctx)
    context = TurnContext(
        sink=_Sink(ctx),
        spec=spec,
        pricing=params["pricing"],
        max_tokens=int(params["max_tokens"]),
        settings=ctx.services.settings,
        build_prompt=_prompt(ctx, spec),
    )
    try:
        state = run_turn(
            _graph(ctx.services.settings.database_url),
            conversation_id=params["conversation_id"],
            job_id=ctx.job_id,
            context=context,
        )
    except ProviderError as exc:
        raise (RetryableError if exc.retryable else FinalError)(str(exc)) from exc
    return {
        **base,
        "reply": state["reply"],
        "usage": state["usage"],
        "cost": credits_text(min(int(state["cost"]), ctx.held)),
        "finish_reason": state["finish_reason"],
    }


def on_settled(session: Session | Connection, row: Row[Any]) -> None:
    """Append the reply (all of it, or what was delivered before a cancel) with the charge."""
    result = row.result or {}
    conversations.add_message(
        session,
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


CHAT = register(
    JobKind(
        name="chat",
        queue="interactive",
        time_limit_s=300,
        price=price,
        run=run,
        model=lambda params: str(params["model"]),
        on_settled=on_settled,
    )
)
