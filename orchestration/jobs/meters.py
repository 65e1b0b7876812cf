"""Prometheus meters of the job path, fed from values the step already holds: no query is added.

Each process counts its own (workers for runs, settlements and compensations; the API for holds);
prefork children share them through prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
set by `creditflow worker` and `creditflow api`). The names are what deploy/grafana and
deploy/prometheus use; tests/integration/test_metrics.py checks that every name they use is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

# Seconds: chat replies take a few, agent tasks and images minutes.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


@dataclass(frozen=True)
class _Meters:
    jobs_finished: Any
    duration: Any
    first_token: Any
    held: Any
    charged: Any
    released: Any
    compensations: Any
    dead_letters: Any


@cache
def _meters() -> _Meters:
    # Made on first use, not at import: prometheus_client picks its value store (one process, or the
    # multiprocess files) when first imported, and `creditflow api` / `worker` set that up first.
    from prometheus_client import Counter, Histogram

    return _Meters(
        jobs_finished=Counter(
            "creditflow_jobs_finished_total", "Jobs that reached a final status", ["kind", "status"]
        ),
        duration=Histogram(
            "creditflow_job_duration_seconds",
            "From a job's start to its end",
            ["kind", "model"],
            buckets=DURATION_BUCKETS,
        ),
        first_token=Histogram(
            "creditflow_job_time_to_first_token_seconds",
            "From a job's start to its first text delta",
            ["kind", "model"],
            buckets=FIRST_TOKEN_BUCKETS,
        ),
        held=Counter(
            "creditflow_credits_held_micro_total", "Micro-credits put on hold for new jobs", ["kind"]
        ),
        charged=Counter(
            "creditflow_credits_charged_micro_total",
            "Micro-credits captured from holds at settlement",
            ["kind", "model"],
        ),
        released=Counter(
            "creditflow_credits_released_micro_total",
            "Micro-credits of holds released (settled below the hold, compensated or canceled)",
            ["kind"],
        ),
        compensations=Counter(
            "creditflow_compensations_total",
            "Jobs ended by compensation (their hold voided), by code",
            ["kind", "code"],
        ),
        dead_letters=Counter(
            "creditflow_dead_letters_total", "Tasks kept as dead letters", ["task", "reason"]
        ),
    )


# A metric's child per label values, kept: `.labels()` takes a lock and builds a key on every call, about
# 4 us of an update's 7-12 us in multiprocess mode. bench/meters.py: a job's meters 40 us (45 without the
# cache; a plain dict floor 1.3 us). Bounded by kinds x models x statuses.
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labels))
    return child


def register() -> None:
    """Create the meters now (a process that exports them before its first job shows them at zero)."""
    _meters()


def _model(model: str | None) -> str:
    return model or "none"


def held(kind: str, amount: int) -> None:
    """A job's hold was committed."""
    _child(_meters().held, kind).inc(amount)


def ended(
    *,
    kind: str,
    model: str | None,
    status: str,
    charged: int,
    released: int,
    started_at: datetime | None,
    finished_at: datetime | None,
) -> None:
    """A job reached a final status with this charge and release (from the row its update returned)."""
    meters = _meters()
    _child(meters.jobs_finished, kind, status).inc()
    if charged:
        _child(meters.charged, kind, _model(model)).inc(charged)
    if released:
        _child(meters.released, kind).inc(released)
    if started_at is not None and finished_at is not None:
        seconds = max(0.0, (finished_at - started_at).total_seconds())
        _child(meters.duration, kind, _model(model)).observe(seconds)


def compensated(kind: str, code: str) -> None:
    """A job was ended by compensation."""
    _child(_meters().compensations, kind, code).inc()


def first_token(kind: str, model: str | None, seconds: float) -> None:
    """A job streamed its first text this long after its run started."""
    _child(_meters().first_token, kind, _model(model)).observe(seconds)


def dead_letter(task: str, reason: str) -> None:
    """A task was kept for an operator."""
    _child(_meters().dead_letters, task, reason).inc()
