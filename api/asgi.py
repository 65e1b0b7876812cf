"""The API process's ASGI front: Flask answers requests in a thread pool, streams run as coroutines.

Every request goes to the Flask app (in a thread pool: api/wsgi_bridge.py), which decides everything
about it. When a view answers with a stream descriptor (api/streams/protocol.py), this front drops
Flask's empty answer and serves the stream itself on redis.asyncio: an open stream is a coroutine and
one Redis connection, not a thread, so thousands fit in one process and ordinary requests never queue
behind them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from flask import Flask

from api.streams.protocol import FRONT_ENVIRON_KEY, STREAM_HEADER
from api.streams.server import AsyncStreams
from api.wsgi_bridge import DoorLimits, ThreadedWSGI, send_problem

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_HEADER = STREAM_HEADER.lower().encode("latin-1")
# The door's limits on the request itself (gunicorn's defaults): a request line, one header line, and
# the number of headers. Beyond them the answer is a problem, before any application code runs.
MAX_REQUEST_LINE = 4094
MAX_HEADER_LINE = 8190
MAX_HEADERS = 100


class StreamingFront:
    """ASGI: the Flask app for every request; the streams its views hand over, as coroutines."""

    def __init__(self, flask_app: Flask, *, threads: int, limits: DoorLimits | None = None) -> None:
        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            environ[FRONT_ENVIRON_KEY] = True
            # The bridge's input ends where the body does: a chunked body (no Content-Length) is read whole
            # (werkzeug reads none of it unless told so, as gunicorn does).
            environ["wsgi.input_terminated"] = True
            return flask_app.wsgi_app(environ, start_response)

        self.flask_app = flask_app
        self.wsgi = ThreadedWSGI(wsgi, threads=threads, limits=limits)
        self.streams = AsyncStreams(flask_app.extensions["creditflow"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: none is served here
            await send({"type": "websocket.close", "code": 1000})
            return
        refused = _refusal(scope)
        if refused is not None:
            await send_problem(send, *refused)
            return
        handed: dict[str, Any] = {}

        async def intercept(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name == _HEADER:
                        handed["descriptor"] = json.loads(value)
                        return
            elif "descriptor" in handed:
                return  # Flask's empty body of a handed-over answer
            await send(message)

        await self.wsgi(scope, receive, intercept)
        if "descriptor" in handed:
            if scope["method"] == "HEAD":  # the stream's headers, no stream: nothing holds its slot
                await self.streams.answer_head(handed["descriptor"], send)
                return
            await self.streams.serve(handed["descriptor"], receive, send, scope)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.streams.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _refusal(scope: Scope) -> tuple[int, str] | None:
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"")
    if target + len(scope["method"]) + 10 > MAX_REQUEST_LINE:
        return 414, f"The request line is too large (at most {MAX_REQUEST_LINE} bytes)."
    headers = scope.get("headers") or []
    if len(headers) > MAX_HEADERS or any(
        len(name) + len(value) + 2 > MAX_HEADER_LINE for name, value in headers
    ):
        return (
            431,
            f"The request header fields are too large (at most {MAX_HEADERS} of {MAX_HEADER_LINE} bytes).",
        )
    return None


def create_asgi_app(flask_app: Flask | None = None) -> StreamingFront:
    """The API as ASGI (what `creditflow api` serves): the Flask app from `create_app` behind the front."""
    if flask_app is None:
        from api.app import create_app

        flask_app = create_app()
    settings = flask_app.extensions["creditflow"].settings
    limits = DoorLimits(
        body_timeout_s=settings.API_BODY_TIMEOUT_S,
        max_body_bytes=flask_app.config["MAX_CONTENT_LENGTH"],
        max_waiting=settings.API_MAX_WAITING,
    )
    return StreamingFront(flask_app, threads=settings.API_THREADS, limits=limits)
