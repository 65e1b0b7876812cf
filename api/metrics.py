"""Prometheus metrics of the API: request counts and latencies, queue lengths on scrape."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import redis
from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from orchestration import stats
from orchestration.bootstrap import Services

REQUESTS = Counter(
    "creditflow_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "creditflow_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "endpoint"]
)
QUEUES = ("critical", "interactive", "agents", "images", "maintenance")


class QueueLengthCollector:
    """Reads each Celery queue's backlog from a Redis broker at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge sample per queue (priority sub-lists summed)."""
        family = GaugeMetricFamily("creditflow_queue_length", "Messages waiting in a queue", labels=["queue"])
        for queue in QUEUES:
            try:
                keys = [queue, *(f"{queue}:{step}" for step in range(1, 10))]
                pipe = self.client.pipeline()
                for key in keys:
                    pipe.llen(key)
                family.add_metric([queue], float(sum(pipe.execute())))
            except redis.RedisError:
                continue  # a scrape must not fail because Redis blinked
        yield family


class JobCollector:
    """Open jobs by status and queue, and unreplayed dead letters, read from the database at scrape."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Two gauges; a database hiccup skips them rather than failing the scrape."""
        try:
            counts, letters = stats.open_jobs(self.services), stats.pending_dead_letters(self.services)
        except SQLAlchemyError:
            return
        family = GaugeMetricFamily(
            "creditflow_jobs_open", "Queued and running jobs", labels=["status", "queue"]
        )
        for (status, queue), count in sorted(counts.items()):
            family.add_metric([status, queue], float(count))
        yield family
        yield GaugeMetricFamily("creditflow_dead_letters_pending", "Dead letters not replayed", value=letters)


def init_metrics(app: Flask) -> None:
    """Time and count every request."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        started = g.get("metrics_started")
        if started is not None:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        return response


def render_metrics(services: Services) -> tuple[bytes, str]:
    """The exposition text: every gunicorn worker's samples when multiprocess mode is on."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    broker = services.settings.broker_url
    if broker.startswith(("redis", "rediss", "unix")):
        registry.register(QueueLengthCollector(redis.Redis.from_url(broker, socket_timeout=2)))
    registry.register(JobCollector(services))
    return generate_latest(registry), CONTENT_TYPE_LATEST
