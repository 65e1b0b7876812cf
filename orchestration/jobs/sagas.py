"""Sagas as data, and the builder that turns one into a linear Celery chain."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from celery.canvas import Signature


@dataclass(frozen=True)
class Step:
    """One task of a saga: `creditflow.<queue>.<name>`, called with the job id only."""

    name: str
    queue: str

    @property
    def task_name(self) -> str:
        """The task's registered name; `task_routes` sends it to `queue`."""
        return f"creditflow.{self.queue}.{self.name}"


@dataclass(frozen=True)
class Saga:
    """Steps run in order; on any failure only `compensation` is enqueued."""

    steps: tuple[Step, ...]
    compensation: Step


def job_saga(queue: str) -> Saga:
    """Every job's saga: `run` on its kind's queue, then `settle` on critical."""
    return Saga(
        steps=(Step("run", queue), Step("settle", "critical")), compensation=Step("compensate", "critical")
    )


def build_canvas(producer: Celery, saga: Saga, job_id: str) -> Signature:
    """The saga as the message Celery sends for a linear chain (no chords), built directly.

    The first step carries the rest in its `chain` field (last step first, as protocol 2 wants it)
    and every step links the compensation as its errback (immutable, so Celery enqueues it as is).
    `chain(...).apply_async()` sends the same message but spends more CPU preparing and freezing
    each step than publishing it."""
    errback = producer.signature(saga.compensation.task_name, args=(job_id,), immutable=True)
    first, *rest = (
        producer.signature(step.task_name, args=(job_id,), immutable=True, link_error=[errback])
        for step in saga.steps
    )
    return first.set(chain=list(reversed(rest))) if rest else first


def send(producer: Celery, saga: Saga, job_id: str, *, priority: int) -> None:
    """Enqueue the saga (call only after the job's transaction committed)."""
    # Saga steps keep no Celery results (the job row is the record): with ignore_result the sender
    # does not subscribe to a result channel it would never read (two Redis round trips per send).
    build_canvas(producer, saga, job_id).apply_async(priority=priority, ignore_result=True)
