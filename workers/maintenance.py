"""Maintenance queue tasks, plus a `ping` (smoke tests) and a `canary` (consume checks) on every queue."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.signals import after_task_publish

import celeryconfig
import ledger
from orchestration.accounts import idempotency
from orchestration.bootstrap import process_services
from orchestration.images import retention
from orchestration.jobs import canaries, reaper
from workers.app import queue_task


def _make_ping(queue: str) -> Any:
    def ping(self: Any, payload: str = "") -> dict[str, Any]:
        """Answer with the queue and worker that consumed this message."""
        return {"queue": queue, "pid": os.getpid(), "hostname": self.request.hostname, "payload": payload}

    ping.__name__ = "ping"
    return queue_task(queue)(ping)


PINGS = {queue: _make_ping(queue) for queue in celeryconfig.QUEUES}


def _make_canary(queue: str) -> Any:
    def canary(self: Any) -> None:
        """Mark `queue` consumed: a worker took this no-op from it (orchestration/jobs/canaries.py)."""
        canaries.record_consumed(self.services, queue, now=time.time())

    canary.__name__ = "canary"
    return queue_task(queue, ignore_result=True)(canary)


CANARIES = {_make_canary(queue).name: queue for queue in celeryconfig.QUEUES}


@after_task_publish.connect  # type: ignore[untyped-decorator]
def _canary_sent(sender: str | None = None, **_kwargs: Any) -> None:
    # Beat publishes the canaries: the time it sent the oldest one still waiting is what stalls show.
    queue = CANARIES.get(sender or "")
    if queue is not None:
        canaries.record_sent(process_services(), queue, now=time.time())


@queue_task("maintenance")
def heartbeat(self: Any) -> float:
    """Beat's liveness mark: the time beat last got a task through to a worker."""
    now = time.time()
    self.services.redis.set("creditflow:beat:last", now, ex=300)
    return now


@queue_task("maintenance", ignore_result=True)
def reap(self: Any) -> dict[str, int]:
    """Fail overrun jobs, re-send lost sagas, expire holds and lots (beat, every few seconds)."""
    return dataclasses.asdict(reaper.sweep(self.services))


@queue_task("maintenance", ignore_result=True)
def seal(self: Any) -> int:
    """Seal the ledger's pending entries into a signed checkpoint (beat, every few seconds)."""
    with self.services.uow() as db:
        checkpoint = ledger.seal(db, signer=_signer(self.services.settings.LEDGER_SIGNING_KEY))
    return checkpoint.size if checkpoint else 0


@functools.lru_cache(maxsize=2)
def _signer(key: str) -> Any:
    return ledger.signer_from_key(key)


@queue_task("maintenance", ignore_result=True)
def purge_idempotency(self: Any) -> int:
    """Forget Idempotency-Key answers older than IDEMPOTENCY_TTL_S (beat, hourly)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=self.services.settings.IDEMPOTENCY_TTL_S)
    with self.services.uow() as db:
        return idempotency.purge(db, older_than=cutoff)


@queue_task("maintenance", ignore_result=True)
def purge_images(self: Any) -> int:
    """Delete images past their retention (IMAGE_RETENTION_DAYS; beat, hourly)."""
    return retention.purge_expired(self.services)

