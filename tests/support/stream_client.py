"""A lean asyncio HTTP/1.1 client for benchmarks and load tests: JSON requests and Server-Sent Events.

The load client shares the machine's two cores with the servers it measures, so it does the least
work per event: one connection per request, chunked or length-delimited bodies, SSE frames split on
blank lines. Every mode of bench/relay.py uses this same client, and so do the concurrency tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    """One SSE frame: its `event:` (default "message"), `data:` text and `id:` (if any)."""

    event: str
    data: str
    id: str | None = None


class Response:
    """Status and headers of an answer, and its body read incrementally."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}

    async def read_head(self) -> None:
        """Read the status line and headers."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked transfer encoding or Content-Length)."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                data = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                yield data
        elif "content-length" in self.headers:
            yield await self.reader.readexactly(int(self.headers["content-length"]))
        else:
            while data := await self.reader.read(65536):
                yield data

    async def body(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def json(self) -> Any:
        """The body as JSON."""
        return json.loads(await self.body())

    async def frames(self) -> AsyncIterator[Frame]:
        """The body as SSE frames (comments skipped)."""
        pending = b""
        async for chunk in self.chunks():
            pending += chunk
            while b"\n\n" in pending:
                raw, pending = pending.split(b"\n\n", 1)
                event, data, entry_id = "message", [], None
                for line in raw.decode().split("\n"):
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("id:"):
                        entry_id = line[3:].strip()
                if data:
                    yield Frame(event, "\n".join(data), entry_id)

    def close(self) -> None:
        """Drop the connection (mid-body too: the server sees a disconnect)."""
        self.writer.close()


async def request(
    port: int, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """Send one request to 127.0.0.1:`port` (a new connection) and read the answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    response = Response(reader, writer)
    await response.read_head()
    return response
