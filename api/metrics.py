"""Prometheus metrics of the API: request counts and latencies, welcome grants, queue lengths on scrape.

`creditflow_queue_length{queue}` is read from the broker Celery publishes to (BROKER_URL, else
REDIS_URL) through orchestration/broker.py: on Redis it sums the queue's priority sub-lists (jobs
at the default priority 5 wait in `images:5`, not `images`), on RabbitMQ it is the queue's depth.
It is what an autoscaler should watch (README "Queues and scaling").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

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

from api.payments.metrics import PaymentCollector
from orchestration import broker
from orchestration.accounts.welcome import WelcomeDecision
from orchestration.jobs import canaries, meters, stats
from orchestration.jobs.kinds import kind_names
from orchestration.payments.crypto import review
from orchestration.services import Services

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "creditflow_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "creditflow_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "endpoint"]
)
QUEUES = ("critical", "interactive", "agents", "images", "maintenance", "notify")


WELCOME_GRANTS = Counter(
    "creditflow_welcome_grants_total", "New accounts given the welcome grant", ["provider"]
)
WELCOME_WITHHELD = Counter(
    "creditflow_welcome_grants_withheld_total",
    "New accounts created without the welcome grant, by reason (provider, address_cap)",
    ["provider", "reason"],
)


def count_welcome(decision: WelcomeDecision) -> None:
    """Count a new account's welcome decision (orchestration/accounts/welcome.py)."""
    if decision.granted:
        WELCOME_GRANTS.labels(decision.provider).inc()
    else:
        WELCOME_WITHHELD.labels(decision.provider, decision.reason).inc()


class QueueLengthCollector:
    """Reads each Celery queue's backlog from the broker at scrape time (priority sub-lists summed)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge sample per queue; none when the broker does not answer (the scrape still works)."""
        family = GaugeMetricFamily("creditflow_queue_length", "Messages waiting in a queue", labels=["queue"])
        by_priority = GaugeMetricFamily(
            "creditflow_queue_priority_length",
            "Messages waiting in a queue's priority sub-list (Redis: 0 is the most urgent; RabbitMQ: all)",
            labels=["queue", "priority"],
        )
        try:
            lengths = broker.priority_lengths(self.services, QUEUES)
        except Exception as exc:  # a scrape must not fail because the broker blinked
            log.warning("queue lengths unavailable: %s: %s", type(exc).__name__, exc)
            lengths = {}
        totals = dict.fromkeys(QUEUES, 0) if lengths else {}
        for (queue, priority), length in lengths.items():
            totals[queue] += length
            by_priority.add_metric([queue, priority], float(length))
        for queue, length in totals.items():
            family.add_metric([queue], float(length))
        yield family
        yield by_priority


class CanaryCollector:
    """Each queue's consume canary (orchestration/jobs/canaries.py), read from Redis at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """How long each queue's oldest canary has waited, and whether the queue is consumed (1) or
        stalled (0); nothing when Redis does not answer."""
        try:
            waited = canaries.waiting_s(self.services, self.services.settings.canary_queues, now=time.time())
        except Exception as exc:  # a scrape must not fail because Redis blinked
            log.warning("queue canaries unavailable: %s: %s", type(exc).__name__, exc)
            return
        timeout = self.services.settings.CANARY_TIMEOUT_S
        age = GaugeMetricFamily(
            "creditflow_queue_canary_waiting_seconds",
            "Seconds the oldest consume canary of a queue has waited unconsumed (0: none waiting)",
            labels=["queue"],
        )
        consuming = GaugeMetricFamily(
            "creditflow_queue_consuming",
            "1 while a queue's canaries are consumed within CANARY_TIMEOUT_S, 0 when it is stalled",
            labels=["queue"],
        )
        for queue, seconds in waited.items():
            age.add_metric([queue], seconds)
            consuming.add_metric([queue], 0.0 if seconds > timeout else 1.0)
        yield age
        yield consuming


class JobCollector:
    """Open jobs by status, queue and kind, unreplayed dead letters and pending holds, read at scrape."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges; a database hiccup skips them rather than failing the scrape."""
        try:
            counts, letters = stats.open_jobs(self.services), stats.pending_dead_letters(self.services)
            on_hold, pending, stranded = stats.holds_pending(self.services)
        except SQLAlchemyError:
            return
        by_queue: dict[tuple[str, str], int] = {}
        open_by_kind = {(status, kind): 0 for status in ("queued", "running") for kind in kind_names()}
        for (status, queue, kind), count in sorted(counts.items()):
            by_queue[status, queue] = by_queue.get((status, queue), 0) + count
            open_by_kind[status, kind] = open_by_kind.get((status, kind), 0) + count
        by_kind = GaugeMetricFamily(
            "creditflow_jobs_open_by_kind", "Queued and running jobs by kind", labels=["status", "kind"]
        )
        for (status, kind), count in sorted(open_by_kind.items()):  # zeros too: a graph needs the series
            by_kind.add_metric([status, kind], float(count))
        family = GaugeMetricFamily(
            "creditflow_jobs_open", "Queued and running jobs", labels=["status", "queue"]
        )
        for (status, queue), count in sorted(by_queue.items()):
            family.add_metric([status, queue], float(count))
        yield family
        yield by_kind
        yield GaugeMetricFamily("creditflow_dead_letters_pending", "Dead letters not replayed", value=letters)
        yield GaugeMetricFamily(
            "creditflow_credits_on_hold_micro", "Micro-credits in pending holds", value=on_hold
        )
        yield GaugeMetricFamily("creditflow_holds_pending", "Pending credit holds", value=pending)
        yield GaugeMetricFamily(
            "creditflow_holds_stranded",
            "Pending holds more than 5 minutes past their expiry (the reaper should have released them)",
            value=stranded,
        )


class CryptoReviewCollector:
    """Crypto transfers and intents waiting for an operator (orchestration/payments/crypto/review.py)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Transfers by reason, and intents; a database hiccup skips them rather than failing the scrape."""
        try:
            counts = review.to_review(self.services)
            intents = review.intents_to_review(self.services)
        except SQLAlchemyError:
            return
        family = GaugeMetricFamily(
            "creditflow_crypto_transfers_to_review",
            "Crypto transfers an operator must look at (deep reorg, excess, underpaid, late, other asset)",
            labels=["reason"],
        )
        for reason, count in counts.items():
            family.add_metric([reason], float(count))
        yield family
        yield GaugeMetricFamily(
            "creditflow_crypto_intents_to_review", "Crypto intents with a transfer to review", value=intents
        )


def init_metrics(app: Flask) -> None:
    """Time and count every request; the job meters exist from the start (orchestration/jobs/meters.py)."""
    meters.register()

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
    registry.register(QueueLengthCollector(services))
    registry.register(JobCollector(services))
    registry.register(CanaryCollector(services))
    registry.register(CryptoReviewCollector(services))
    registry.register(PaymentCollector(services))
    return generate_latest(registry), CONTENT_TYPE_LATEST
