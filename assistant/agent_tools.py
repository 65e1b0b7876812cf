"""Tools of the research agent: the user's own conversations (memory search) and an optional web search."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.memory import search
from assistant.tables import conversations, messages
from runtime.settings import Settings

SCAN_LIMIT = 2000  # most recent messages of the user searched
EXCERPT = 400


class SearchError(RuntimeError):
    """The web search provider failed (the agent goes on with what it has)."""


def conversation_sources(session: Session, *, user_id: str, query: str, limit: int) -> list[dict[str, Any]]:
    """The user's messages most relevant to `query`, as sources."""
    rows = session.execute(
        select(
            messages.c.id,
            messages.c.conversation_id,
            messages.c.role,
            messages.c.content,
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
        for score, row in search(rows, query=query, limit=limit)
    ]


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
