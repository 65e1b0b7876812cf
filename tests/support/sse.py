"""A small Server-Sent Events reader over `requests` for tests."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Frame:
    """One SSE message (`id`, `event`, parsed `data`), or a comment when `comment` is set."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None


def _lines(response: requests.Response) -> Iterator[str]:
    # Read what has arrived (chunk_size=None yields each HTTP chunk as it comes), not byte by byte:
    # a one-byte read loop costs more CPU than the server spends sending the event.
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for chunk in response.iter_content(chunk_size=None):
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        yield from (line.removesuffix("\r") for line in complete)
    if pending:
        yield pending


def frames(response: requests.Response) -> Iterator[Frame]:
    """Parse the stream as it arrives; comments come out as frames with `comment`."""
    current = Frame()
    lines: list[str] = []
    for raw in _lines(response):
        if raw == "":
            if lines or current.id or current.event:
                current.data = json.loads("\n".join(lines)) if lines else None
                yield current
            current, lines = Frame(), []
            continue
        if raw.startswith(":"):
            yield Frame(comment=raw[1:].strip())
            continue
        name, _, value = raw.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "data":
            lines.append(value)


def open_stream(
    url: str, token: str, last_event_id: str | None = None, timeout: float = 30
) -> requests.Response:
    """GET an SSE endpoint, streaming."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    response.raise_for_status()
    return response
