"""Tools of the research agent: the user's own conversations (memory search) and an optional web search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import Connection, select

from assistant.embeddings import available as embeddings_available
from assistant.memory import relevance, search
from assistant.tables import conversations, messages
from runtime.settings import Settings

SCAN_LIMIT = 2000  # most recent messages of the user searched by words
SEMANTIC_LIMIT = 300  # most recent messages searched by embedding similarity
MIN_SIMILARITY = 0.2  # below this, a message is not about the query at all
EXCERPT = 400


class SearchError(RuntimeError):
    """The web search provider failed (the agent goes on with what it has)."""


def conversation_sources(
    session: Connection, *, user_id: str, query: str, limit: int
) -> list[dict[str, Any]]:
    """The user's messages most relevant to `query` (MiniLM memory search, else shared words), as sources."""
    rows = session.execute(
        select(
            messages.c.id,
            messages.c.conversation_id,
            messages.c.role,
            messages.c.content,
            messages.c.embedding,
            conversations.c.title,
        )
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .where(conversations.c.user_id == user_id)
        .order_by(messages.c.created_at.desc())
        .limit(SCAN_LIMIT)
    ).all()
    return [
        {
            "type": "conversation",
            "title": row.title or "conversation",
            "ref": f"conversation:{row.conversation_id}#message:{row.id}",
            "excerpt": row.content[:EXCERPT],
            "score": round(score, 3),
        }
        for score, row in _ranked(rows, query=query, limit=limit)
    ]


def _ranked(rows: Sequence[Any], *, query: str, limit: int) -> list[tuple[float, Any]]:
    # The same embedding similarity the chat memory uses, over the most recent messages (stored
    # embeddings are reused; only missing ones are computed); word overlap when MiniLM is absent.
    if not embeddings_available():
        return search(rows, query=query, limit=limit)
    recent = [row for row in rows[:SEMANTIC_LIMIT] if row.content]
    scores, _computed = relevance(recent, new=query)
    ranked = sorted(((scores[row.id], row) for row in recent), key=lambda pair: -pair[0])
    return [(score, row) for score, row in ranked if score >= MIN_SIMILARITY][:limit]


def web_sources(settings: Settings, *, query: str, limit: int) -> list[dict[str, Any]]:
    """SearxNG's JSON API (AGENT_SEARCH_URL) results as sources; [] when no provider is set."""
    if not settings.AGENT_SEARCH_URL:
        return []
    try:
        response = httpx.get(
            settings.AGENT_SEARCH_URL.rstrip("/") + "/search",
            params={"q": query, "format": "json"},
            timeout=settings.AGENT_SEARCH_TIMEOUT_S,
        )
        response.raise_for_status()
        results = response.json().get("results") or []
    except (httpx.HTTPError, ValueError) as exc:
        raise SearchError(f"web search failed: {exc}") from exc
    return [
        {
            "type": "web",
            "title": str(item.get("title") or item.get("url")),
            "ref": str(item.get("url")),
            "excerpt": str(item.get("content") or "")[:EXCERPT],
        }
        for item in results[:limit]
        if isinstance(item, dict) and item.get("url")
    ]
