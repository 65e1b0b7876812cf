"""Semantic search over the caller's own conversations, ranked by an embedding model of the catalog.

The messages' vectors are computed by the first search that needs them (at most SEARCH_EMBED_LIMIT a
search, newest first) and kept beside the messages. A priced model is billed for the text it embedded
(the query and those messages): a hold for the worst case (one token a byte) before the model is called,
captured at our count (4 bytes a token) after, or voided when the model failed.
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
    fresh = {key: vectors.packed(vector) for key, vector in computed.items()}
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
