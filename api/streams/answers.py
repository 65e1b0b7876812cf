"""How far an answer of the async front got, how one whose stream broke off still ends properly, and
which answers' clients stopped reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from api.openai import format

Send = Callable[[dict[str, Any]], Awaitable[None]]
BROKEN = "The reply's events became unavailable; the completion was canceled (charged for what it delivered)."
REVOKED = "The API key was revoked; the completion was canceled (charged for what it delivered)."
# A whole answer (`stream: false`) is not canceled: its job runs on and a retry with its key answers it.
WHOLE_BROKEN = "The reply's events became unavailable; the completion runs on: retry to get its answer."


class Answer:
    """One stream's ASGI `send`, noting how far the answer got, so a stream that broke can still end."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False
        self.blocked_since: float | None = None  # when the send under way began

    async def send(self, message: dict[str, Any]) -> None:
        """Send, and note a start, an end, and how long a send waits for its client to read."""
        self.blocked_since = time.monotonic()
        try:
            await self._send(message)
        finally:
            self.blocked_since = None
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body", False):
            self.ended = True


async def end_broken(answer: Answer, *, openai: bool, detail: str | None = None) -> None:
    """End the answer of a stream that raised: an SSE stream just ends (its client resumes from
    Last-Event-ID); an OpenAI reply ends with an error in OpenAI's shape (503 if nothing was sent yet;
    401 when `detail` says its key was revoked)."""
    status, code = (401, "key_revoked") if detail == REVOKED else (503, "events_unavailable")
    detail = detail or BROKEN
    with contextlib.suppress(Exception):  # the client may be gone as well
        if not answer.started:
            whole = detail if detail != BROKEN else WHOLE_BROKEN  # nothing sent yet: a whole answer
            raw = json.dumps(format.error(status, whole, code=code)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
            await answer.send({"type": "http.response.start", "status": status, "headers": headers})
            await answer.send({"type": "http.response.body", "body": raw})
            return
        if answer.ended:
            return
        text = format.stream_error(status, detail, code=code) + format.DONE
        await answer.send({"type": "http.response.body", "body": text.encode() if openai else b""})


class Lease(Protocol):
    """What keeps a stream's slot in its user's cap."""

    async def kept(self) -> bool: ...


@dataclass(eq=False)
class Watched:
    """One open answer under the stall watch."""

    answer: Answer
    lease: Lease
    abort: Callable[[], None] | None
    streaming: asyncio.Future[None]
    stalled: bool = False


class StallWatch:
    """Every open answer of this process, looked at together every few seconds: one whose send has
    waited for its client longer than `timeout_s` is dropped (the connection aborted, or without the
    means to, its stream canceled); while it waits less, its slot is kept."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._open: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None
        self._refreshing: set[asyncio.Future[bool]] = set()

    def watch(
        self, answer: Answer, lease: Lease, abort: Callable[[], None] | None, streaming: asyncio.Future[None]
    ) -> Watched:
        """Start watching an answer (until `forget`)."""
        watched = Watched(answer, lease, abort, streaming)
        self._open.add(watched)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return watched

    def forget(self, watched: Watched) -> None:
        """Stop watching an answer that ended."""
        self._open.discard(watched)

    async def _run(self) -> None:
        # One pass over every open answer per half timeout: attribute reads, no task per stream.
        while self._open:
            await asyncio.sleep(self.timeout_s / 2)
            now = time.monotonic()
            for watched in list(self._open):
                since = watched.answer.blocked_since
                if since is None or watched.stalled:
                    continue
                if now - since > self.timeout_s:
                    self._drop(watched)
                else:
                    refresh = asyncio.ensure_future(watched.lease.kept())  # rare: streams mid-wait
                    self._refreshing.add(refresh)
                    refresh.add_done_callback(self._refreshing.discard)

    @staticmethod
    def _drop(watched: Watched) -> None:
        watched.stalled = True
        if watched.abort is not None:
            watched.abort()  # the blocked send returns, the client counts as gone
        else:
            watched.streaming.cancel()
