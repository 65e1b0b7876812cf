"""How far an answer of the async front got, and how one whose stream broke off still ends properly."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from api import openai_format

Send = Callable[[dict[str, Any]], Awaitable[None]]
BROKEN = "The reply's events became unavailable; the completion was canceled (charged for what it delivered)."
# A whole answer (`stream: false`) is not canceled: its job runs on and a retry with its key answers it.
WHOLE_BROKEN = "The reply's events became unavailable; the completion runs on: retry to get its answer."


class Answer:
    """One stream's ASGI `send`, noting how far the answer got, so a stream that broke can still end."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def send(self, message: dict[str, Any]) -> None:
        """Send, and note a start and an end."""
        await self._send(message)
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body", False):
            self.ended = True


async def end_broken(answer: Answer, *, openai: bool) -> None:
    """End the answer of a stream that raised: an SSE stream just ends (its client resumes from
    Last-Event-ID); an OpenAI reply ends with an error in OpenAI's shape (503 if nothing was sent yet)."""
    with contextlib.suppress(Exception):  # the client may be gone as well
        if not answer.started:
            raw = json.dumps(openai_format.error(503, WHOLE_BROKEN, code="events_unavailable")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
            await answer.send({"type": "http.response.start", "status": 503, "headers": headers})
            await answer.send({"type": "http.response.body", "body": raw})
            return
        if answer.ended:
            return
        text = openai_format.stream_error(503, BROKEN, code="events_unavailable") + openai_format.DONE
        await answer.send({"type": "http.response.body", "body": text.encode() if openai else b""})
