"""The async front's streams on a real `creditflow api` server: what a busy or failing stream does."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from orchestration import progress
from tests.integration.api.conftest import bearer, make_token
from tests.support.processes import api_server

pytestmark = pytest.mark.slow
HEARTBEAT_S = 1.0  # a slot's lease is two heartbeats and 2 s: 4 s


@pytest.fixture(scope="module")
def capped(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API server on the async front where a user may hold one open stream."""
    log = tmp_path_factory.mktemp("front") / "api.log"
    env = {**server_env, "SSE_MAX_STREAMS_PER_USER": "1", "SSE_HEARTBEAT_S": str(HEARTBEAT_S)}
    with api_server(env=env, log=log) as base:
        yield base


def _open(base: str, path: str, token: str) -> requests.Response:
    return requests.get(
        f"{base}{path}", headers=bearer(token) | {"Accept": "text/event-stream"}, stream=True, timeout=30
    )


def test_a_stream_busy_past_its_lease_keeps_its_slot(capped: str, server_env: dict[str, str]) -> None:
    token = make_token()
    created = requests.post(
        f"{capped}/api/v1/diagnostics/jobs", json={"steps": 1}, headers=bearer(token), timeout=30
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]  # queued: no worker reads this server's broker
    stream = _open(capped, f"/api/v1/jobs/{job_id}/events", token)
    assert stream.status_code == 200, stream.text[:300]
    client = redis.Redis.from_url(server_env["REDIS_URL"], decode_responses=True)
    stop = threading.Event()
    received: list[bytes] = []

    def publish() -> None:  # a job whose events never pause: no read of the stream comes back empty
        step = 0
        while not stop.wait(0.2):
            step += 1
            progress.publish_job_event(client, job_id, "progress", held=1, spent=0, stage="work", step=step)

    def read() -> None:
        with contextlib.suppress(Exception):  # the test closes the response under it at the end
            for chunk in stream.iter_content(chunk_size=None):
                received.append(chunk)

    workers = [threading.Thread(target=publish, daemon=True), threading.Thread(target=read, daemon=True)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3 * (2 * HEARTBEAT_S + 2) / 2)  # one and a half leases
        assert b"event: progress" in b"".join(received)[-2000:]  # still streaming
        second = _open(capped, "/api/v1/me/events", token)
        # The busy stream still holds the user's only slot: a second one is refused.
        assert second.status_code == 429, second.status_code
        second.close()
    finally:
        stop.set()
        stream.close()
        for worker in workers:
            worker.join(timeout=10)
        client.close()
