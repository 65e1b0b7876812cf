"""Real prefork `creditflow worker` processes on the real broker: routing, chains, poison messages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery, chain

import celeryconfig
from tests.support.processes import ROOT, child_env, worker

pytestmark = pytest.mark.slow


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celery]:
    """A Celery client configured like the workers (celeryconfig), on the test broker."""
    app = Celery("test-producer")
    app.config_from_object(celeryconfig)
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    yield app
    app.close()


@pytest.fixture
def worker_env(redis_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a worker that also loads the test-only tasks."""
    return child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        VAR_DIR=str(tmp_path / "var"),
        WORKER_EXTRA_TASK_MODULES="tests.support.tasks",
        TASK_MAX_REDELIVERIES="2",
    )


def test_every_queue_is_consumed_by_a_prefork_child(
    producer: Celery, worker_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with worker(",".join(celeryconfig.QUEUES), env=worker_env, cwd=ROOT, log=log) as process:
        children = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        for queue in celeryconfig.QUEUES:
            answer = producer.send_task(f"creditflow.{queue}.ping", args=[queue]).get(timeout=30)
            assert answer["queue"] == queue
            assert answer["payload"] == queue
            assert answer["pid"] in children, "a prefork pool child, not the main process, ran it"


def test_chain_steps_are_routed_by_name_to_their_own_queues(
    producer: Celery, worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    # Each step is routed by task_routes alone: a queue= on a decorator would be lost in a chain.
    steps = ["critical", "agents", "interactive", "critical"]
    canvas = chain(*(producer.signature(f"creditflow.{queue}.where") for queue in steps))
    with worker(",".join(celeryconfig.QUEUES), env=worker_env, cwd=ROOT, log=tmp_path / "w.log"):
        result = canvas.apply_async()
        assert result.get(timeout=30)["queue"] == "critical"
    root = result
    while root.parent is not None:
        root = root.parent
    delivered = redis.Redis.from_url(redis_url, decode_responses=True).lrange(f"test:where:{root.id}", 0, -1)
    assert delivered == [f"{queue}:{queue}" for queue in steps]


def test_poisoned_message_stops_after_the_redelivery_cap(
    producer: Celery, worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    log = tmp_path / "worker.log"
    with worker("critical", env=worker_env, cwd=ROOT, log=log, concurrency=1):
        producer.send_task("creditflow.critical.die_hard", args=[marker])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "dropped after 2 redeliveries" not in log.read_text():
            time.sleep(0.2)
        time.sleep(2)  # a further (wrong) redelivery would show up in this time
        executions = int(client.get(f"test:die_hard:{marker}") or 0)
        backlog = client.llen("critical")
    # The first delivery plus TASK_MAX_REDELIVERIES redeliveries ran; the next one was dropped.
    assert executions == 3, log.read_text()[-3000:]
    assert backlog == 0
