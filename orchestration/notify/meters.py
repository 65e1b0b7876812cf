"""The Prometheus meter of webhook deliveries by outcome, counted where each attempt ends (the notify
queue's workers export it on their metrics port, like the job meters)."""

from __future__ import annotations

from functools import cache
from typing import Any

OUTCOMES = ("succeeded", "pending", "failed", "canceled")  # pending: failed, another attempt is due


@cache
def _deliveries() -> Any:
    # Made on first use, not at import: prometheus_client picks its value store when first imported.
    from prometheus_client import Counter

    return Counter(
        "creditflow_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"]
    )


def delivery(outcome: str) -> None:
    """Count one attempt's outcome (succeeded, pending: to be retried, failed: given up, canceled)."""
    _deliveries().labels(outcome if outcome in OUTCOMES else "failed").inc()
