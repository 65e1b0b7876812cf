"""Semantic search over the caller's own conversations, ranked by an embedding model of the catalog.

The messages' vectors are computed by the first search that needs them (at most SEARCH_EMBED_LIMIT a
search, newest first) and kept beside the messages. A remote model (it only waits) embeds them in the
request; the local MiniLM, CPU work, embeds only the query there and leaves the messages to a task on the
`local` queue (the search says how many are not yet embedded). A priced model is billed for the text it
embedded (the query and those messages): a hold for the worst case (one token a byte) before the model
is called, captured at our count (4 bytes a token) after, or voided when the model failed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ledger
from assistant import vectors
from assistant.providers import ProviderError
from assistant.selection import select_model
from assistant.specs import ModelSpec
from assistant.transcript import token_estimate
from orchestration.replies.conversations import models
from orchestration.services import Services

HOLD_TTL = timedelta(minutes=10)  # the reaper voids a hold a crashed search left
LOCAL = ("minilm",)  # providers computed on our own CPU
EMBED_TASK = "creditflow.local.embed_missing"
EMBED_PENDING_S = 60  # one task per user and model in this long; more searches meanwhile send none


@dataclass(frozen=True)
class SearchConversations:
    """Query: the caller's messages most similar to `query`."""

    user_id: str
    query: str
    limit: int = 10
    model: str | None = None


def embedding_cost(spec: ModelSpec, tokens: int) -> int:
    """Micro-credits for embedding `tokens`, rounded up (never free when the model has a price)."""
    return -(-tokens * int(spec.pricing.get("input_per_million", 0)) // 1_000_000)


def search_conversations(services: Services, command: SearchConversations) -> dict[str, Any]:
    """Rank the caller's messages by similarity to the query; ModelUnavailable, InsufficientCredits or
    ProviderError (nothing charged) when it can't."""
    settings = services.settings
    spec = select_model(models(services), explicit=command.model, kind="embedding", cost_mode="cheapest")
    with services.uow(autocommit=True) as db:
        rows = vectors.candidates(
            db, user_id=command.user_id, model=spec.id, limit=settings.SEARCH_SCAN_LIMIT
        )
    missing = [row for row in rows if row.vector is None][: settings.SEARCH_EMBED_LIMIT]
    if missing and spec.provider in LOCAL and not spec.pricing.get("input_per_million"):
        _embed_later(services, user_id=command.user_id, model=spec.id)
        missing = []
    texts = [command.query, *(row.content for row in missing)]
    key = f"search:{uuid.uuid4().hex}"
    worst = embedding_cost(spec, sum(len(text.encode()) for text in texts))
    hold = None
    if worst:
        with services.uow(account_of=command.user_id) as db:
            hold = ledger.hold(
                db,
                user_id=command.user_id,
                amount=worst,
                expires_at=datetime.now(UTC) + HOLD_TTL,
                reference=key,
                idempotency_key=f"{key}:hold",
            )
    try:
        query = vectors.embed_query(spec, settings, command.query)
        computed = dict(
            zip(
                (row.id for row in missing),
                vectors.embed_documents(spec, settings, [r.content for r in missing]),
                strict=True,
            )
        )
    except ProviderError:
        if hold is not None:
            with services.uow(account_of=command.user_id) as db:
                ledger.void(db, hold_id=hold.id, idempotency_key=f"{key}:void")
        raise
    tokens = sum(token_estimate(text) for text in texts)
    cost = min(embedding_cost(spec, tokens), worst)
    fresh = {message_id: vectors.packed(vector) for message_id, vector in computed.items()}
    with services.uow(account_of=command.user_id) as db:
        vectors.store(db, model=spec.id, vectors=fresh)
        if hold is not None:
            ledger.capture(db, hold_id=hold.id, amount=cost, idempotency_key=f"{key}:capture")
    searched = [(row, row.vector or fresh[row.id]) for row in rows if row.vector or row.id in fresh]
    return {
        "model": spec.id,
        "items": vectors.rank(query, searched, limit=command.limit),
        "searched": len(searched),
        "not_yet_embedded": len(rows) - len(searched),
        "usage": {"input_tokens": tokens, "counted_by": "estimate"},
        "cost": cost,
    }


def _embed_later(services: Services, *, user_id: str, model: str) -> None:
    key = f"creditflow:search:embedding:{model}:{user_id}"
    if services.redis.set(key, 1, nx=True, ex=EMBED_PENDING_S):
        services.producer.send_task(EMBED_TASK, args=[user_id, model], ignore_result=True)


def embed_messages(services: Services, *, user_id: str, model: str) -> int:
    """Embed up to SEARCH_EMBED_LIMIT of the user's messages that have no vector for a free local model
    yet (the `local` queue's task); how many it stored."""
    spec = next((m for m in models(services) if m.id == model and m.kind == "embedding"), None)
    if spec is None or spec.provider not in LOCAL or spec.pricing.get("input_per_million"):
        return 0  # gone, or priced: a priced model is only run (and billed) by a search
    settings = services.settings
    with services.uow(autocommit=True) as db:
        rows = vectors.candidates(db, user_id=user_id, model=model, limit=settings.SEARCH_SCAN_LIMIT)
    missing = [row for row in rows if row.vector is None][: settings.SEARCH_EMBED_LIMIT]
    computed = vectors.embed_documents(spec, settings, [row.content for row in missing])
    with services.uow() as db:
        vectors.store(
            db, model=model, vectors={r.id: vectors.packed(v) for r, v in zip(missing, computed, strict=True)}
        )
    services.redis.delete(
        f"creditflow:search:embedding:{model}:{user_id}"
    )  # more may wait: the next search sends again
    return len(missing)
