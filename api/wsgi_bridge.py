"""Flask under the async front: a request is one hop to a worker thread and one back.

a2wsgi's middleware hands every message across threads on its own (the response's start, each body
chunk, the closing empty chunk, each read of the request body), each hop a wakeup of the event loop
and a wait of the thread: about 400 us of CPU per request, more than Flask's own work on a balance
read. Here the loop reads a small request body before the thread starts, and the thread hands back a
small answer whole; only a large body (either way) streams chunk by chunk, through a2wsgi's `Body`
and one hop per chunk. The environ is a2wsgi's (`build_environ`), so views see what they saw before.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from a2wsgi.wsgi import Body, build_environ

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Coroutine[Any, Any, None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# A request body up to this size is read by the loop before Flask runs (no thread waits on the client).
PREREAD_BYTES = 64 * 1024
# An answer up to this size goes back in one hop; beyond it the rest streams, a hop per chunk.
WHOLE_ANSWER_BYTES = 256 * 1024


class ThreadedWSGI:
    """ASGI for a WSGI app on a pool of `threads` worker threads."""

    def __init__(self, app: WSGIApp, *, threads: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve one HTTP request."""
        loop = asyncio.get_running_loop()
        request_body = await _request_body(loop, receive)
        environ = cast(dict[str, Any], build_environ(scope, request_body))  # type: ignore[arg-type]
        run = functools.partial(contextvars.copy_context().run, self._respond, environ, loop, send)
        whole = await loop.run_in_executor(self.executor, run)
        if whole is not None:
            start, answer = whole
            await send(start)
            await send({"type": "http.response.body", "body": answer})

    def _respond(
        self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send
    ) -> tuple[Message, bytes] | None:
        """In a worker thread: run the app; its answer whole, or None once it streamed it itself."""
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


async def _request_body(loop: asyncio.AbstractEventLoop, receive: Receive) -> Any:
    """The request body as `wsgi.input`: read whole when small, else a2wsgi's streaming `Body`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: what arrived is all there is
            return io.BytesIO(b"".join(chunks))
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False):
            return io.BytesIO(b"".join(chunks))
        if size > PREREAD_BYTES:
            body = Body(loop, receive)  # type: ignore[arg-type]
            body.buffer.extend(b"".join(chunks))
            return body
