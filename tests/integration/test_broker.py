"""Broker checks read the broker Celery publishes to (BROKER_URL), on pooled connections, never REDIS_URL.

The broker here is a private server (a Redis without persistence, or a RabbitMQ node) that the tests
kill and restart; REDIS_URL stays the suite's Redis, so a check that read it would see no change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from orchestration import broker
from orchestration.bootstrap import bootstrap
from orchestration.jobs import reaper, sagas
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.brokers import PrivateRabbitMQ, PrivateRedis, rabbitmq_installed

PROBE_BOUND_S = 10.0  # a failed readiness probe answers well within a load balancer's timeout


@pytest.fixture
def redis_broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis as the Celery broker, stopped after the test."""
    server = PrivateRedis(tmp_path / "broker").start()
    yield server
    server.stop()


def _services(database_url: str, redis_url: str, broker_url: str) -> Services:
    return bootstrap(load_settings(DATABASE_URL=database_url, REDIS_URL=redis_url, BROKER_URL=broker_url))


@pytest.fixture
def broker_services(database_url: str, redis_url: str, redis_broker: PrivateRedis) -> Iterator[Services]:
    """Services whose broker is the private Redis and whose REDIS_URL is the suite's."""
    services = _services(database_url, redis_url, redis_broker.url)
    yield services
    services.close()


def _metric(client: FlaskClient, queue: str) -> float | None:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf'^creditflow_queue_length\{{queue="{queue}"\}} (\S+)$', text, flags=re.MULTILINE)
    return float(found.group(1)) if found else None


def _priorities(client: FlaskClient, queue: str) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    pattern = rf'^creditflow_queue_priority_length\{{priority="([^"]+)",queue="{queue}"\}} (\S+)$'
    return {p: float(v) for p, v in re.findall(pattern, text, flags=re.MULTILINE) if float(v)}


def test_a_lost_redis_broker_is_noticed_on_the_broker(
    broker_services: Services, redis_broker: PrivateRedis
) -> None:
    assert reaper._epoch_lost(broker_services) is True  # a fresh broker: nothing was ever queued there
    assert reaper._epoch_lost(broker_services) is False
    assert redis_broker.client().exists(broker.EPOCH_KEY)
    # Restarted without persistence, it forgot its queues and the marker with them; REDIS_URL did not.
    redis_broker.stop()
    redis_broker.start()
    assert reaper._epoch_lost(broker_services) is True
    assert reaper._epoch_lost(broker_services) is False


def test_queue_length_counts_priority_sub_lists_on_the_broker(
    broker_services: Services, redis_broker: PrivateRedis
) -> None:
    client = create_app(broker_services.settings, broker_services).test_client()
    assert _metric(client, "images") == 0.0
    # A job's saga at the default priority 5, as orchestration/jobs/create.py sends it (nobody consumes
    # `images`).
    sagas.send(broker_services.producer, sagas.job_saga("images"), "job-priority-5", priority=5)
    keys = {key.decode() for key in redis_broker.client().keys("images*")}
    assert keys == {"images:5"}, keys  # kombu's sub-list for priority 5 with our transport options
    assert _metric(client, "images") == 1.0
    sagas.send(broker_services.producer, sagas.job_saga("images"), "job-priority-0", priority=0)
    assert {key.decode() for key in redis_broker.client().keys("images*")} == {"images", "images:5"}
    assert _metric(client, "images") == 2.0
    assert _metric(client, "critical") == 0.0
    assert _priorities(client, "images") == {"0": 1.0, "5": 1.0}  # each sub-list on its own


def _connections(server: PrivateRedis) -> int:
    return int(server.client().info("stats")["total_connections_received"])


def test_readiness_reuses_a_pooled_broker_connection_and_names_only_what_failed(
    broker_services: Services, redis_broker: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_app(broker_services.settings, broker_services).test_client()
    assert client.get("/readyz").status_code == 200
    opened = _connections(redis_broker)
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    assert _connections(redis_broker) - opened <= 2  # our own two INFO clients; no probe opened one

    redis_broker.stop()
    started = time.monotonic()
    answer = client.get("/readyz")
    assert time.monotonic() - started < PROBE_BOUND_S
    assert answer.status_code == 503
    # The consume canaries' detail (`queues`, `stalled_queues`) rides along; it never fails readiness.
    assert {key: answer.json[key] for key in ("status", "failed", "checks")} == {
        "status": "unavailable",
        "failed": ["broker"],
        "checks": {"database": "ok", "redis": "ok", "broker": "failed"},
    }
    assert set(answer.json) <= {"status", "failed", "checks", "queues", "stalled_queues"}
    assert str(redis_broker.port) not in answer.get_data(as_text=True)  # no internals for anonymous callers
    assert any("readiness: broker failed" in r.getMessage() for r in caplog.records)  # the reason is logged

    redis_broker.start()
    deadline = time.monotonic() + 15
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the pooled connection did not recover"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not rabbitmq_installed(), reason="RabbitMQ is not installed on this machine")
def test_rabbitmq_keeps_queued_messages_so_no_epoch_check_and_metrics_read_it(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    rabbit = PrivateRabbitMQ(tmp_path / "rabbit").start()
    services = _services(database_url, redis_url, rabbit.url)
    try:
        client = create_app(services.settings, services).test_client()
        assert client.get("/readyz").status_code == 200
        assert broker.epoch_lost(services) is False
        sagas.send(services.producer, sagas.job_saga("images"), "job-on-rabbitmq", priority=5)
        assert _metric(client, "images") == 1.0
        assert _priorities(client, "images") == {"all": 1.0}  # one queue, priorities inside it
        assert _metric(client, "agents") == 0.0  # never declared: counted as empty, the scrape goes on
        rabbit.stop()
        assert client.get("/readyz").json["failed"] == ["broker"]
        rabbit.start()
        # A crash and restart kept the durable queue's persistent message: nothing for the reaper to resend.
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the pooled AMQP connection did not recover"
            time.sleep(0.5)
        assert _metric(client, "images") == 1.0
        assert broker.epoch_lost(services) is False
    finally:
        services.close()
        rabbit.stop()
