"""Flask under the async front: a request is one hop to a worker thread and one back.

a2wsgi's middleware hands every message across threads on its own (the response's start, each body
chunk, the closing empty chunk, each read of the request body), each hop a wakeup of the event loop
and a wait of the thread: about 400 us of CPU per request, more than Flask's own work on a balance
read. Here the loop reads the whole request body before a thread is taken, and the thread hands back
a small answer whole; only a large answer streams, one hop per chunk. The environ is a2wsgi's
(`build_environ`), so views see what they saw before.

The door holds against slow and idle clients (README, "The API process and its streams"): a body is
read by the loop under a deadline (408) and a size limit (413), so a client that sends half a body
and stops holds no thread; the requests waiting for a thread are bounded (503 with Retry-After
beyond); a request whose client left while it waited is not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from a2wsgi.wsgi import build_environ

from api.errors import PROBLEM_JSON, problem_document

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Coroutine[Any, Any, None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An answer up to this size goes back in one hop; beyond it the rest streams, a hop per chunk.
WHOLE_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class DoorLimits:
    """How long a body may take, how large it may be, how many requests may wait for a thread."""

    body_timeout_s: float = 30.0
    max_body_bytes: int = 1024 * 1024
    max_waiting: int = 256


class _Refused(Exception):
    def __init__(self, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


class _Client:
    """Whether the client left while its request waited for a thread."""

    gone = False


class ThreadedWSGI:
    """ASGI for a WSGI app on a pool of `threads` worker threads, behind the door's limits."""

    def __init__(self, app: WSGIApp, *, threads: int, limits: DoorLimits | None = None) -> None:
        self.app = app
        self.threads = threads
        self.limits = limits or DoorLimits()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")
        self.in_pool = 0  # requests handed to the pool and not yet answered: running and waiting

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve one HTTP request."""
        loop = asyncio.get_running_loop()
        try:
            request_body = await _request_body(receive, scope, self.limits)
            if self.in_pool >= self.threads + self.limits.max_waiting:
                raise _Refused(503, "The server is busy; try again shortly.", ((b"retry-after", b"1"),))
        except _Refused as refused:
            await send_problem(send, refused.status, refused.detail, refused.headers)
            return
        environ = cast(dict[str, Any], build_environ(scope, request_body))  # type: ignore[arg-type]
        client = _Client()
        # Only a request that must wait for a thread listens for its client leaving meanwhile: the
        # common case costs nothing (a watcher is a task).
        watcher = asyncio.ensure_future(_watch(receive, client)) if self.in_pool >= self.threads else None
        run = functools.partial(contextvars.copy_context().run, self._respond, environ, loop, send, client)
        self.in_pool += 1
        try:
            whole = await loop.run_in_executor(self.executor, run)
        finally:
            self.in_pool -= 1
            if watcher is not None:
                watcher.cancel()
        if whole is not None:
            start, answer = whole
            await send(start)
            await send({"type": "http.response.body", "body": answer})

    def _respond(
        self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send, client: _Client
    ) -> tuple[Message, bytes] | None:
        """In a worker thread: run the app; its answer whole, or None once it streamed it (or nobody
        was left to answer)."""
        if client.gone:
            return None
        start: Message = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            encoded = [(n.strip().encode("latin1").lower(), v.strip().encode("latin1")) for n, v in headers]
            start.update(type="http.response.start", status=int(status.split(" ", 1)[0]), headers=encoded)
            return written.append  # WSGI's legacy write(): its bytes come before the iterable's

        iterable = self.app(environ, start_response)
        try:
            chunks, size = written, 0
            rest = iter(iterable)
            for chunk in rest:
                chunks.append(chunk)
                size += len(chunk)
                if size > WHOLE_ANSWER_BYTES:
                    break
            else:
                return start, b"".join(chunks)

            def push(message: Message) -> None:
                asyncio.run_coroutine_threadsafe(send(message), loop).result()

            push(start)
            push({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            for chunk in rest:
                push({"type": "http.response.body", "body": chunk, "more_body": True})
            push({"type": "http.response.body", "body": b""})
            return None
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


async def _request_body(receive: Receive, scope: dict[str, Any], limits: DoorLimits) -> io.BytesIO:
    """The whole request body as `wsgi.input`, read by the loop: 413 past the limit, 408 past the deadline."""
    message = await receive()
    if message["type"] != "http.request":  # the client left: what arrived is all there is
        return io.BytesIO()
    first = message.get("body", b"")
    if not message.get("more_body", False):
        return io.BytesIO(first)  # the common case: the body came with the headers
    declared = _content_length(scope)
    if declared is not None and declared > limits.max_body_bytes:
        raise _Refused(413, f"The request body is larger than {limits.max_body_bytes} bytes.")
    chunks, size = [first], len(first)
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            while message.get("more_body", False):
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limits.max_body_bytes:
                    raise _Refused(413, f"The request body is larger than {limits.max_body_bytes} bytes.")
    except TimeoutError:
        raise _Refused(
            408, f"The request body did not arrive within {limits.body_timeout_s:g} s."
        ) from None
    return io.BytesIO(b"".join(chunks))


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


async def _watch(receive: Receive, client: _Client) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    client.gone = True


async def send_problem(
    send: Callable[[Message], Awaitable[None]],
    status: int,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer a problem+json document from the front itself, closing the connection."""
    body = json.dumps(problem_document(status, detail)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})
