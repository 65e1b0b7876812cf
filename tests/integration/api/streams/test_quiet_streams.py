"""Streams kept quiet for longer than any client library's default timeout stay open, with keep-alives.

redis-py 8 gives a connection a 5 s socket timeout unless told otherwise: a blocking read of a quiet
stream then raised TimeoutError and the answer ended 5 s after its last event. These run on the
versions a fresh install takes, with a heartbeat longer than that default.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
import requests

from orchestration.jobs import progress
from tests.integration.api.conftest import bearer, make_token, tuned_server

pytestmark = pytest.mark.slow
HEARTBEAT_S = 6.0  # longer than redis-py's default socket timeout (5 s)
QUIET_S = 30.0


@dataclass
class Reader:
    """Reads one streamed answer in a thread, keeping what arrived and whether it ended."""

    response: requests.Response
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    error: str = ""

    def run(self) -> None:
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                self.chunks.append(chunk)
            self.ended = True
        except Exception as exc:  # the test closes the answer under it at the end
            self.error = repr(exc)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()


@pytest.fixture(scope="module")
def quiet_server(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API server (its jobs stay queued: no worker reads its broker) with a 6 s heartbeat."""
    with tuned_server(server_env, tmp_path_factory, SSE_HEARTBEAT_S=HEARTBEAT_S) as base:
        yield base


def _start(response: requests.Response) -> tuple[Reader, threading.Thread]:
    assert response.status_code == 200, response.text[:300]
    reader = Reader(response)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    return reader, thread


def test_quiet_streams_stay_open_with_keep_alives(quiet_server: str, server_env: dict[str, str]) -> None:
    token = make_token(f"user-{uuid.uuid4().hex[:10]}")
    headers = bearer(token) | {"Accept": "text/event-stream"}
    created = requests.post(
        f"{quiet_server}/api/v1/diagnostics/jobs", json={"steps": 1}, headers=bearer(token), timeout=30
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    answers = {
        "me": requests.get(f"{quiet_server}/api/v1/me/events", headers=headers, stream=True, timeout=60),
        "job": requests.get(
            f"{quiet_server}/api/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=60
        ),
        "openai": requests.post(
            f"{quiet_server}/openai/v1/chat/completions",
            json={**chat, "stream": True},
            headers=bearer(token),
            stream=True,
            timeout=60,
        ),
    }
    readers = {name: _start(response) for name, response in answers.items()}
    whole: dict[str, requests.Response] = {}

    def ask_whole() -> None:  # a non-streamed reply whose first token waits longer than 5 s
        with contextlib.suppress(requests.RequestException):
            whole["answer"] = requests.post(
                f"{quiet_server}/openai/v1/chat/completions", json=chat, headers=bearer(token), timeout=120
            )

    asking = threading.Thread(target=ask_whole, daemon=True)
    asking.start()
    try:
        time.sleep(QUIET_S)
        for name, (reader, _thread) in readers.items():
            assert not reader.ended, (name, reader.text[-300:])
            assert not reader.error, (name, reader.error)
            assert reader.text.count(": keep-alive") >= QUIET_S / HEARTBEAT_S - 2, (name, reader.text)
            assert "error" not in reader.text, (name, reader.text)
            assert "failed" not in reader.text, (name, reader.text)
        assert "answer" not in whole, whole["answer"].text[:300]  # still waiting, not canceled
        # The job stream is still live: an event published now reaches it.
        client = redis.Redis.from_url(server_env["REDIS_URL"], decode_responses=True)
        progress.publish_job_event(client, job_id, "progress", held=1, spent=0, stage="work", step=1)
        client.close()
        job_reader = readers["job"][0]
        deadline = time.monotonic() + 10
        while "event: progress" not in job_reader.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "event: progress" in job_reader.text, job_reader.text[-300:]
    finally:
        for response in answers.values():
            response.close()
        for _reader, thread in readers.values():
            thread.join(timeout=10)
