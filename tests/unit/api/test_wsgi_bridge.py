"""The front's WSGI bridge: small and large bodies both ways arrive whole and in order."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from api.wsgi_bridge import PREREAD_BYTES, WHOLE_ANSWER_BYTES, ThreadedWSGI

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
