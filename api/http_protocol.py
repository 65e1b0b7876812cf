"""The API process's HTTP door: uvicorn's httptools protocol with a deadline on request headers, and a
way for a stream to drop a connection whose client stopped reading.

uvicorn has no header timeout: a client that connects and sends half a request line is kept for ever
(each costs a descriptor and counts toward `limit_concurrency`). Here a request's headers must arrive
within API_HEADER_TIMEOUT_S of its first byte (or of the connection, for its first request), else the
answer is 408 and the connection closes. The gap between requests is uvicorn's keep-alive timeout.

A stream whose client does not read fills the transport's buffer; closing such a transport waits for
the buffer to drain, which never happens. Each request's scope carries `abort` (in its extensions,
under ABORT_EXTENSION) to drop the connection at once instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from api.errors import PROBLEM_JSON, problem_document
from runtime.settings import Settings

ABORT_EXTENSION = "creditflow.abort"


class DeadlineHttpTools(HttpToolsProtocol):
    """httptools' protocol whose request headers must arrive within `header_timeout_s`."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's header deadline with the connection."""
        self._header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the pending deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """The first bytes of a new request start its header deadline."""
        if self.cycle is None or self.cycle.response_complete:
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        """Give the request's scope the means to drop its connection."""
        super().on_message_begin()
        self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.transport.abort}}  # type: ignore[typeddict-unknown-key]

    def on_headers_complete(self) -> None:
        """The headers arrived in time: the request runs."""
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        detail = f"The request headers did not arrive within {self.header_timeout_s:g} s."
        body = json.dumps(problem_document(408, detail)).encode()
        head = (
            f"HTTP/1.1 408 Request Timeout\r\ncontent-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


def stream_abort(scope: dict[str, Any]) -> Any:
    """The callable that drops this request's connection at once, if the server gave one."""
    return (scope.get("extensions") or {}).get(ABORT_EXTENSION, {}).get("abort")


def worker_class(settings: Settings) -> type[UvicornWorker]:
    """gunicorn's uvicorn worker with the door's limits from settings (README, "The API process")."""
    timeouts = {"header_timeout_s": settings.API_HEADER_TIMEOUT_S}
    protocol = type("ApiHttpProtocol", (DeadlineHttpTools,), timeouts)
    config = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": protocol,
        # Connections and running requests per process beyond this answer 503 (uvicorn counts both;
        # each open event stream is one of each).
        "limit_concurrency": settings.API_MAX_CONNECTIONS,
    }
    return type("ApiWorker", (UvicornWorker,), {"CONFIG_KWARGS": config})
