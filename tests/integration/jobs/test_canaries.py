"""Consume canaries on real processes: beat sends them, a real worker consumes them; a worker told to
stop consuming one queue (connected, answering control, as after a bad broker reconnect) shows that
queue stalled in /readyz and the metrics, its watchdog then stops it (free slots, a forgotten queue),
and a fresh worker clears it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from flask.testing import FlaskClient

import celeryconfig
from api.app import create_app
from orchestration.bootstrap import bootstrap
from runtime.settings import load_settings
from tests.support.processes import ROOT, child_env, creditflow, redis_server, stop, wait_for_log, worker

pytestmark = pytest.mark.slow

CANARY = {"CANARY_INTERVAL_S": "1", "CANARY_TIMEOUT_S": "3", "CANARY_QUEUES": "interactive,agents"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own: beat fills the maintenance queue nobody here consumes."""
    with redis_server(tmp_path) as (url, _server):
        yield url


@pytest.fixture
def api(private_redis: str, database_url: str) -> Iterator[FlaskClient]:
    services = bootstrap(load_settings(DATABASE_URL=database_url, REDIS_URL=private_redis, **CANARY))
    try:
        yield create_app(services.settings, services).test_client()
    finally:
        services.close()


def _until(client: FlaskClient, wanted: dict[str, str], timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/readyz")
        assert answer.status_code == 200, answer.json  # a stalled queue is detail, not unreadiness
        if answer.json.get("queues") == wanted:
            return dict(answer.json)
        assert time.monotonic() < deadline, f"queues never {wanted}: {answer.json}"
        time.sleep(0.3)


def _metrics(client: FlaskClient) -> str:
    return client.get("/metrics").get_data(as_text=True)


def test_a_queue_no_longer_consumed_shows_stalled_until_it_is_consumed_again(
    api: FlaskClient, private_redis: str, database_url: str, tmp_path: Path
) -> None:
    var = str(tmp_path / "var")
    env = child_env(REDIS_URL=private_redis, DATABASE_URL=database_url, VAR_DIR=var, **CANARY)
    control = Celery("test-control")
    control.config_from_object(celeryconfig)
    control.conf.update(broker_url=private_redis, result_backend=None)
    beat_log = tmp_path / "beat.log"
    beat = creditflow("beat", env=env, cwd=ROOT, log=beat_log)
    try:
        log = tmp_path / "worker.log"
        with worker("interactive,agents", env=env, cwd=ROOT, log=log, name="canary") as first:
            wait_for_log(beat_log, "Sending due task canary-agents", process=beat)
            client = redis.Redis.from_url(private_redis)
            deadline = time.monotonic() + 30
            marks = ("creditflow:canary:agents:consumed", "creditflow:canary:interactive:consumed")
            while client.exists(*marks) != 2:
                assert time.monotonic() < deadline, "the worker never consumed both canaries"
                time.sleep(0.2)
            ready = _until(api, {"interactive": "ok", "agents": "ok"})
            assert ready["stalled_queues"] == []
            assert 'creditflow_queue_consuming{queue="agents"} 1.0' in _metrics(api)

            # Connected and answering, but no longer taking anything from `agents`.
            replies = control.control.cancel_consumer("agents", reply=True, timeout=5)
            assert replies, "the worker did not answer the control message"
            assert all("ok" in next(iter(r.values())) for r in replies), replies
            stalled = _until(api, {"interactive": "ok", "agents": "stalled"})
            assert stalled["stalled_queues"] == ["agents"]
            assert stalled["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}
            text = _metrics(api)
            assert 'creditflow_queue_consuming{queue="agents"} 0.0' in text
            assert 'creditflow_queue_consuming{queue="interactive"} 1.0' in text
            waited = next(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith('creditflow_queue_canary_waiting_seconds{queue="agents"}')
            )
            assert waited > 3

            # Its free slots idle while its queue waits: the watchdog stops it for its supervisor.
            first.wait(timeout=30)
            assert first.returncode == 0, log.read_text()[-3000:]
            assert "consume watchdog: agents not consumed" in log.read_text()

        # A fresh worker: the expired canaries are dropped unrun, the next one clears the mark.
        with worker("interactive,agents", env=env, cwd=ROOT, log=tmp_path / "second.log", name="second"):
            _until(api, {"interactive": "ok", "agents": "ok"})
    finally:
        stop(beat)
        control.close()
