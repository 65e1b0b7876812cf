"""Operations endpoints: liveness, readiness (database, Redis, broker) and Prometheus metrics.

`/readyz` also reports each queue's consume canary (orchestration/jobs/canaries.py) under `queues`:
`stalled` names a queue no worker took a message from for CANARY_TIMEOUT_S. It is detail for
operators, not a reason to take this API out of its load balancer: the API still takes requests.

`/readyz` is anonymous (load balancers call it), so it names only what failed; the reason (an
exception's text can carry host names, ports, user names) goes to the log. Every check reuses a
pooled connection with a short timeout: a probe every few seconds must not open new connections.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request
from flask_smorest import abort
from sqlalchemy import text

from api.metrics import render_metrics
from orchestration import broker
from orchestration.jobs import canaries
from orchestration.services import Services

ops = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


def _services() -> Services:
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]


def _check_database(services: Services) -> None:
    with services.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_redis(services: Services) -> None:
    services.redis.ping()


def _check_broker(services: Services) -> None:
    broker.ping(services)  # the producer's pooled connection, not a new one per probe


CHECKS: dict[str, Callable[[Services], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
}


@ops.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@ops.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when database, Redis and broker answer; 503 naming each that does not."""
    services = _services()
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check(services)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready": named in the answer, explained in the log
            log.warning("readiness: %s failed: %s: %s", name, type(exc).__name__, exc)
            checks[name] = "failed"
    failed = sorted(name for name, state in checks.items() if state != "ok")
    status = 503 if failed else 200
    body: dict[str, object] = {"status": "unavailable" if failed else "ready", "failed": failed}
    body["checks"] = checks
    if checks["redis"] == "ok":
        body |= _queues(services)
    return jsonify(body), status


def _queues(services: Services) -> dict[str, object]:
    try:
        states = canaries.queue_states(services, services.settings.canary_queues, now=time.time())
    except Exception as exc:  # detail only: a blink here must not fail the probe
        log.warning("readiness: queue canaries unreadable: %s: %s", type(exc).__name__, exc)
        return {}
    return {"queues": states, "stalled_queues": sorted(q for q, state in states.items() if state != "ok")}


def _may_read_metrics(services: Services) -> bool:
    settings = services.settings
    header = request.headers.get("Authorization", "")
    expected = f"Bearer {settings.METRICS_TOKEN}".encode()
    if settings.METRICS_TOKEN and hmac.compare_digest(header.encode(), expected):
        return True
    try:
        client = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
        client = client.ipv4_mapped
    return any(client in network for network in settings.metrics_networks)


@ops.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of this API (all gunicorn workers) and queue lengths.

    Only for clients in METRICS_ALLOW or bearing METRICS_TOKEN: the figures tell a competitor or an
    attacker how busy and how rich the service is."""
    services = _services()
    if not _may_read_metrics(services):
        abort(403, message="/metrics is for METRICS_ALLOW networks or a bearer of METRICS_TOKEN.")
    body, content_type = render_metrics(services)
    return Response(body, content_type=content_type)
