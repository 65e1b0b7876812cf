"""The async front's streams on a real `creditflow api` server: what a busy or failing stream does."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import create_engine, select

from orchestration.accounts.users import users
from orchestration.jobs import progress
from orchestration.tables import jobs
from tests.integration.api.conftest import bearer, make_token
from tests.support.brokers import PrivateRedis
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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own, which it kills."""
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def _job_of(database_url: str, user_external_id: str, timeout: float = 30) -> str:
    """The id of the user's only job, once it exists."""
    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with engine.connect() as db:
                found = db.execute(
                    select(jobs.c.id)
                    .join(users, users.c.id == jobs.c.user_id)
                    .where(users.c.external_id == user_external_id)
                ).scalar_one_or_none()
            if found is not None:
                return str(found)
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"no job for {user_external_id} in {timeout}s")


def _status(database_url: str, job_id: str) -> str:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            return str(db.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_completion_whose_redis_went_away_answers_an_error_and_a_streamed_one_is_canceled(
    server_env: dict[str, str], private_redis: PrivateRedis, tmp_path: Path, stream: bool
) -> None:
    # The server's Redis (events, and its broker: no worker reads it, the job stays queued) dies while
    # the answer waits for the job's events.
    env = {**server_env, "REDIS_URL": private_redis.url, "BROKER_URL": private_redis.url}
    sub = f"user-{uuid.uuid4().hex[:10]}"
    with api_server(env=env, log=tmp_path / "api.log") as base:
        answer: dict[str, requests.Response] = {}
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}

        def ask() -> None:
            answer["response"] = requests.post(
                f"{base}/openai/v1/chat/completions", json=body, headers=bearer(make_token(sub)), timeout=60
            )

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        job_id = _job_of(env["DATABASE_URL"], sub)
        time.sleep(0.5)  # the front is reading the job's events
        private_redis.stop()
        asking.join(timeout=60)
        response = answer["response"]
        if stream:
            assert response.status_code == 200
            assert '"error"' in response.text.split("data: [DONE]")[0].rsplit("data: ", 1)[-1]
            assert response.text.endswith("data: [DONE]\n\n")
        else:
            assert response.status_code == 503, response.text[:300]
            assert response.json()["error"]["type"] == "api_error"
        # A streamed reply got no end: its job is canceled (nothing was delivered, nothing is charged).
        # A whole answer's job is not: it runs on, and a retry (503 is retried) gets its answer.
        assert _status(env["DATABASE_URL"], job_id) == ("canceled" if stream else "queued")


def _jobs_of(database_url: str, user_external_id: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            return len(
                db.execute(
                    select(jobs.c.id)
                    .join(users, users.c.id == jobs.c.user_id)
                    .where(users.c.external_id == user_external_id)
                ).all()
            )
    finally:
        engine.dispose()


def test_an_openai_answer_counts_in_the_users_stream_cap(capped: str, server_env: dict[str, str]) -> None:
    sub = f"user-{uuid.uuid4().hex[:10]}"
    token = make_token(sub)
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = f"{capped}/openai/v1/chat/completions"
    first = requests.post(url, json=body, headers=bearer(token), stream=True, timeout=30)
    assert first.status_code == 200, first.text[:300]  # queued: no worker reads this server's broker
    try:
        second = requests.post(url, json={**body, "stream": False}, headers=bearer(token), timeout=30)
        assert second.status_code == 429, second.text[:300]
        assert second.json()["error"]["code"] == "too-many-streams"
        assert int(second.headers["Retry-After"]) >= 1
        assert _jobs_of(server_env["DATABASE_URL"], sub) == 1  # refused before any hold or job
        assert _open(capped, "/api/v1/me/events", token).status_code == 429
    finally:
        first.close()
    deadline = time.monotonic() + 10  # the front sees the client leave and gives the slot back
    while time.monotonic() < deadline:
        events = _open(capped, "/api/v1/me/events", token)
        events.close()
        if events.status_code == 200:
            break
        time.sleep(0.2)
    assert events.status_code == 200


def test_a_head_of_a_stream_answers_its_headers_and_holds_no_slot(capped: str) -> None:
    token = make_token()
    for _ in range(3):  # the cap is one stream: a HEAD that kept its slot would refuse the next
        head = requests.head(f"{capped}/api/v1/me/events", headers=bearer(token), timeout=10)
        assert head.status_code == 200, head.status_code
        assert head.headers["Content-Type"].startswith("text/event-stream")
    stream = _open(capped, "/api/v1/me/events", token)
    try:
        assert stream.status_code == 200
    finally:
        stream.close()
