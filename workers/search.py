"""Tasks of the semantic search: the local embedding model's vectors of messages, on the `local` queue."""

from __future__ import annotations

from typing import Any

from orchestration.replies.search import embed_messages
from workers.app import queue_task


@queue_task("local", ignore_result=True)
def embed_missing(self: Any, user_id: str, model: str) -> int:
    """Embed the user's messages that have no vector for `model` yet (CPU work: cores counted here)."""
    return embed_messages(self.services, user_id=user_id, model=model)
