"""The front's WSGI bridge: small and large bodies both ways arrive whole and in order."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from api.wsgi_bridge import WHOLE_ANSWER_BYTES, DoorLimits, ThreadedWSGI

PREREAD_BYTES = 64 * 1024  # the size a body was once streamed past

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the front runs on uvicorn's asyncio loop


def _app() -> Flask:
    app = Flask(__name__)

    @app.post("/digest")
    def digest() -> dict[str, Any]:
        data = request.get_data()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    @app.get("/big/<int:size>")
    def big(size: int) -> Response:
        def chunks() -> Iterator[bytes]:
            for start in range(0, size, 10_000):
                yield bytes((start // 10_000) % 251 for _ in range(min(10_000, size - start)))

        return Response(chunks(), mimetype="application/octet-stream")

    return app


def _legacy_write(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    write = start_response("201 Created", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"then returned"]


def _expected(size: int) -> bytes:
    return b"".join(
        bytes(((start // 10_000) % 251,) * min(10_000, size - start)) for start in range(0, size, 10_000)
    )


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge.test")


@pytest.mark.parametrize("size", [0, 100, PREREAD_BYTES + 1, 5 * PREREAD_BYTES])
async def test_a_request_body_arrives_whole_in_pieces(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7_000):  # many ASGI messages, past the pre-read
            yield data[start : start + 7_000]

    async with _client(ThreadedWSGI(_app().wsgi_app, threads=2)) as client:
        answer = await client.post("/digest", content=pieces(), headers={"Content-Length": str(size)})
    assert answer.status_code == 200
    assert answer.json() == {"size": size, "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("size", [1, WHOLE_ANSWER_BYTES, WHOLE_ANSWER_BYTES + 1, 4 * WHOLE_ANSWER_BYTES + 5])
async def test_an_answer_arrives_whole_small_or_streamed(size: int) -> None:
    async with _client(ThreadedWSGI(_app().wsgi_app, threads=2)) as client:
        answer = await client.get(f"/big/{size}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == _expected(size)


async def test_the_legacy_write_callable_comes_first() -> None:
    async with _client(ThreadedWSGI(_legacy_write, threads=1)) as client:
        answer = await client.get("/")
    assert (answer.status_code, answer.text) == (201, "written then returned")


def _blocking_app(release: threading.Event, ran: list[str]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ran.append(environ["PATH_INFO"])
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    return app


class _Exchange:
    """One request driven by hand: its body at once, then (if told) the client leaving."""

    def __init__(self, path: str) -> None:
        self.scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
            "root_path": "",
        }
        self.left = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._first = True

    async def receive(self) -> dict[str, Any]:
        if self._first:
            self._first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)


async def test_requests_beyond_the_waiting_bound_are_refused_at_once() -> None:
    release, ran = threading.Event(), []
    bridge = ThreadedWSGI(_blocking_app(release, ran), threads=1, limits=DoorLimits(max_waiting=1))
    running, waiting, refused = _Exchange("/a"), _Exchange("/b"), _Exchange("/c")
    tasks = [asyncio.ensure_future(bridge(x.scope, x.receive, x.send)) for x in (running, waiting)]
    await asyncio.sleep(0.2)
    await bridge(refused.scope, refused.receive, refused.send)  # answered without waiting for a thread
    assert refused.status == 503
    assert (b"retry-after", b"1") in refused.sent[0]["headers"]
    release.set()
    await asyncio.gather(*tasks)
    assert (running.status, waiting.status, ran) == (200, 200, ["/a", "/b"])


async def test_a_request_whose_client_left_while_it_waited_is_not_run() -> None:
    release, ran = threading.Event(), []
    bridge = ThreadedWSGI(_blocking_app(release, ran), threads=1)
    running, leaving = _Exchange("/a"), _Exchange("/b")
    tasks = [asyncio.ensure_future(bridge(x.scope, x.receive, x.send)) for x in (running, leaving)]
    await asyncio.sleep(0.2)
    leaving.left.set()  # gone while /a holds the only thread
    await asyncio.sleep(0.1)
    release.set()
    await asyncio.gather(*tasks)
    assert ran == ["/a"]
    assert leaving.status is None


async def test_a_body_that_stops_arriving_is_answered_408_without_a_thread() -> None:
    ran: list[str] = []
    limits = DoorLimits(body_timeout_s=0.3)
    bridge = ThreadedWSGI(_blocking_app(threading.Event(), ran), threads=1, limits=limits)
    stalled = _Exchange("/slow")
    sent_first = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_first
        if not sent_first:
            sent_first = True
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(60)  # the rest never comes
        raise AssertionError("unreachable")

    await bridge(stalled.scope, receive, stalled.send)
    assert stalled.status == 408
    assert ran == []
