"""Embedding models of the catalog (kind `embedding`) and the vectors stored beside the messages.

A model is the local MiniLM (`provider: minilm`, assistant/embeddings.py) or any LangChain `Embeddings`
class (`provider: langchain`, built like a chat model: assistant/providers/langchain.py). Ranking is a
scan in this process: every candidate's vector against the query's, in one NumPy product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from assistant.providers import ProviderError
from assistant.providers.langchain import BASES, BuildError, build, provider_error
from assistant.specs import ModelSpec
from assistant.tables import conversations, message_vectors, messages
from runtime.settings import Settings

EXCERPT = 400


def _langchain(spec: ModelSpec, settings: Settings) -> Any:
    try:
        return build(spec, settings, base=BASES["embedding"])
    except BuildError as exc:
        raise ProviderError(f"model {spec.id} is unavailable: {exc}", retryable=False) from exc


def embed_documents(spec: ModelSpec, settings: Settings, texts: Sequence[str]) -> list[list[float]]:
    """One vector per text (messages: LangChain's `embed_documents`)."""
    if not texts:
        return []
    if spec.provider == "minilm":
        from assistant.embeddings import embed

        return embed(list(texts))
    model = _langchain(spec, settings)
    try:
        return [[float(value) for value in row] for row in model.embed_documents(list(texts))]
    except Exception as exc:  # each integration raises its own errors
        raise provider_error(exc) from exc


def embed_query(spec: ModelSpec, settings: Settings, text: str) -> list[float]:
    """The query's vector (LangChain's `embed_query`: some models embed questions differently)."""
    if spec.provider == "minilm":
        return embed_documents(spec, settings, [text])[0]
    model = _langchain(spec, settings)
    try:
        return [float(value) for value in model.embed_query(text)]
    except Exception as exc:  # each integration raises its own errors
        raise provider_error(exc) from exc


def candidates(db: Connection, *, user_id: str, model: str, limit: int) -> list[Any]:
    """The user's most recent messages (newest first) with their vector for `model` (None: not yet)."""
    joined = messages.join(conversations, conversations.c.id == messages.c.conversation_id).outerjoin(
        message_vectors,
        and_(message_vectors.c.message_id == messages.c.id, message_vectors.c.model == model),
    )
    query = (
        select(
            messages.c.id,
            messages.c.conversation_id,
            messages.c.position,
            messages.c.role,
            messages.c.content,
            messages.c.created_at,
            conversations.c.title,
            message_vectors.c.vector,
        )
        .select_from(joined)
        .where(conversations.c.user_id == user_id, messages.c.content != "")
        .order_by(messages.c.created_at.desc(), messages.c.id)
        .limit(limit)
    )
    return list(db.execute(query).all())


def stored(db: Connection, *, model: str, message_ids: Sequence[str]) -> dict[str, bytes]:
    """The packed vectors kept for these messages and `model` (message id -> vector)."""
    if not message_ids:
        return {}
    query = select(message_vectors.c.message_id, message_vectors.c.vector).where(
        message_vectors.c.model == model, message_vectors.c.message_id.in_(list(message_ids))
    )
    return {row.message_id: bytes(row.vector) for row in db.execute(query)}


def store(db: Connection, *, model: str, vectors: Mapping[str, bytes]) -> None:
    """Keep the packed vectors computed for `model` (a concurrent search that stored one first wins)."""
    if not vectors:
        return
    insert = pg_insert if db.dialect.name == "postgresql" else sqlite_insert
    now = datetime.now(UTC)
    rows = [
        {
            "message_id": key,
            "model": model,
            "dimensions": len(vector) // 4,
            "vector": vector,
            "created_at": now,
        }
        for key, vector in vectors.items()
    ]
    db.execute(insert(message_vectors).values(rows).on_conflict_do_nothing())


def _unit(vector: Sequence[float]) -> Any:
    array = np.asarray(vector, dtype="<f4")
    return array / max(float(np.linalg.norm(array)), 1e-12)


def packed(vector: Sequence[float]) -> bytes:
    """A vector as stored: scaled to unit length (a search is then one product), float32 little-endian."""
    return bytes(_unit(vector).tobytes())


def rank(query: Sequence[float], rows: Sequence[tuple[Any, bytes]], *, limit: int) -> list[dict[str, Any]]:
    """The rows (each with its packed vector) most similar to `query` (cosine), best first."""
    wanted = _unit(query)
    usable = [(row, blob) for row, blob in rows if len(blob) == wanted.nbytes]  # another model's size: skip
    if not usable or limit < 1:
        return []
    # One buffer for all: NumPy's vstack of 20,000 small arrays took 8x the product itself.
    matrix = np.frombuffer(b"".join(blob for _row, blob in usable), dtype="<f4").reshape(len(usable), -1)
    scores = matrix @ wanted
    top = np.argpartition(-scores, min(limit, len(usable)) - 1)[:limit]
    best = sorted(top.tolist(), key=lambda index: (-scores[index], index))
    return [_result(usable[index][0], float(scores[index])) for index in best]


def _result(row: Any, score: float) -> dict[str, Any]:
    return {
        "message_id": row.id,
        "conversation_id": row.conversation_id,
        "conversation_title": row.title,
        "position": row.position,
        "role": row.role,
        "excerpt": row.content[:EXCERPT],
        "created_at": row.created_at,
        "score": round(score, 4),
    }
