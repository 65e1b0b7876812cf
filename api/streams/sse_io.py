"""An event stream's ASGI messages: its start, its pieces, its end, and the client leaving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from api.streams.frames import HEADERS

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def disconnected(receive: Receive) -> None:
    """Until the client leaves."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def start(send: Send, *, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """The answer's start: an event stream's headers."""
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in HEADERS.items() if name != "Connection"
    ]
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *(extra or [])]})


async def write(send: Send, text: str) -> None:
    """A piece of the stream."""
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def end(send: Send) -> None:
    """The stream's end."""
    await send({"type": "http.response.body", "body": b"", "more_body": False})
