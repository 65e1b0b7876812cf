"""The reaper: ends what nobody will finish, each by compare-and-set so late steps change nothing.

Every item is its own unit of work with its own error handling: one job of a kind this worker does not
know (a rolling deploy), a failing hook or a deadlock is logged and counted, and the pass goes on to
the rest (holds and lots still expire). Money items lock their account first (orchestration/uow.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, exists, select, update

import ledger
from ledger.tables import holds
from orchestration import broker
from orchestration.jobs import compensation, dispatch, steps
from orchestration.jobs.kinds import get_kind
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs
from runtime.limits import REAPER_GRACE_S

log = logging.getLogger(__name__)
MAX_ENQUEUES = 5
BATCH = 200
T = TypeVar("T")


@dataclass
class Sweep:
    """What one pass of the reaper did; `errors` counts items that raised (logged, retried next pass)."""

    timed_out: int = 0
    worker_lost: int = 0
    expired_holds: int = 0
    reenqueued: int = 0
    abandoned: int = 0
    woken: int = 0
    expired_lots: int = 0
    errors: int = 0


def _epoch_lost(services: Services) -> bool:
    # Redis without persistence forgets queued messages when it restarts, and this key with them.
    return broker.epoch_lost(services)  # on the broker's own Redis, not REDIS_URL


def _each(result: Sweep, what: str, items: Iterable[T], action: Callable[[T], Any]) -> int:
    """Run `action` on every item on its own; count what it did (truthy) and what raised."""
    done = 0
    for item in items:
        try:
            done += bool(action(item))
        except Exception:
            result.errors += 1
            log.exception("reaper: %s failed for %r; the next pass retries it", what, item)
    return done


def sweep(services: Services, *, now: datetime | None = None) -> Sweep:
    """One pass: end overrun and orphaned jobs, re-send lost sagas, expire holds and lots."""
    now = now or datetime.now(UTC)
    result = Sweep()
    result.timed_out = _each(
        result,
        "ending an overrun job",
        _overrun(services, now),
        lambda row: _end(services, row, code="timed_out", message="the job ran past its time limit"),
    )
    result.worker_lost = _each(
        result,
        "ending or resuming an orphaned job",
        _orphaned(services, now),
        lambda row: _lost_worker(services, row, now),
    )
    _resend_lost(services, now, result)
    with services.uow(autocommit=True) as db:
        due = ledger.due_holds(db, now=now, limit=BATCH)
    result.expired_holds = _each(
        result, "expiring a hold", due, lambda item: _expire_hold(services, item, now)
    )
    result.timed_out += _each(
        result,
        "failing a job on an expired hold",
        _on_expired_holds(services),
        lambda job_id: compensation.fail(
            services, job_id=job_id, code="hold_expired", message="the credit hold expired"
        ),
    )
    with services.uow(autocommit=True) as db:
        accounts = ledger.accounts_with_expired_lots(db, now=now, limit=BATCH)
    result.expired_lots = _each(
        result, "expiring lots", accounts, lambda account_id: _expire_lots(services, account_id, now)
    )
    return result


def _expire_hold(services: Services, item: tuple[str, int], now: datetime) -> bool:
    hold_id, account_id = item
    with services.uow(account=account_id) as db:
        return ledger.expire_hold(db, hold_id=hold_id, now=now)


def _expire_lots(services: Services, account_id: int, now: datetime) -> int:
    with services.uow(account=account_id) as db:
        return ledger.expire_lots_of(db, account_id=account_id, now=now)


def _end(services: Services, row: Any, *, code: str, message: str) -> bool:
    if row.run_completed:
        # The work was delivered but its settle message was lost: bill it, don't throw it away.
        return steps.settle(services, job_id=row.id) is not None
    return compensation.fail(services, job_id=row.id, code=code, message=message, statuses=("running",))


def _lost_worker(services: Services, row: Any, now: datetime) -> bool:
    if not row.run_completed and row.enqueues < MAX_ENQUEUES and _resumable(row.kind):
        return _requeue(services, row, now)
    lost = "the worker running the job stopped; nothing was charged"
    return _end(services, row, code="worker_lost", message=lost)


def _resumable(kind: str) -> bool:
    try:
        return get_kind(kind).resumable
    except KeyError:  # a kind this worker does not know (a rolling deploy): it is ended as before
        return False


def _requeue(services: Services, row: Any, now: datetime) -> bool:
    """Queue a resumable job whose worker is gone again: its next run picks up what it left upstream
    (an image job polls the provider id it stored) instead of the job failing with the work paid for."""
    stale = now - timedelta(seconds=services.settings.JOB_HEARTBEAT_TIMEOUT_S)
    with services.uow(autocommit=True) as db:
        requeued = db.execute(
            update(jobs)
            .where(
                jobs.c.id == row.id,
                jobs.c.status == RUNNING_SQL,
                jobs.c.heartbeat_at < stale,
                jobs.c.run_completed.is_(False),
            )
            .values(status="queued", claim=None, enqueued_at=None)
        ).rowcount
    if requeued != 1:
        return False
    log.warning("job %s lost its worker; queued again to resume", row.id)
    return dispatch.resend(services, job_id=row.id, queue=row.queue, priority=row.priority)


def _overrun(services: Services, now: datetime) -> list[Any]:
    """Running jobs past their time limit plus the grace (exact per limit: none hides behind others)."""
    with services.uow(autocommit=True) as db:
        limits = db.execute(
            select(jobs.c.time_limit_s).distinct().where(jobs.c.status == RUNNING_SQL)
        ).scalars()
        rows: list[Any] = []
        for limit in sorted(limits):
            cutoff = now - timedelta(seconds=limit + REAPER_GRACE_S)
            rows += db.execute(
                select(jobs.c.id, jobs.c.run_completed)
                .where(jobs.c.status == RUNNING_SQL, jobs.c.time_limit_s == limit, jobs.c.started_at < cutoff)
                .order_by(jobs.c.started_at)
                .limit(BATCH)
            ).all()
    return rows[:BATCH]


_ORPHAN_COLUMNS = ("id", "run_completed", "kind", "queue", "priority", "enqueues")


def _orphaned(services: Services, now: datetime) -> list[Any]:
    """Running jobs whose worker stopped refreshing their heartbeat (killed, host lost)."""
    stale = now - timedelta(seconds=services.settings.JOB_HEARTBEAT_TIMEOUT_S)
    with services.uow(autocommit=True) as db:
        return list(
            db.execute(
                select(*(jobs.c[name] for name in _ORPHAN_COLUMNS))
                .where(jobs.c.status == RUNNING_SQL, jobs.c.heartbeat_at < stale)
                .order_by(jobs.c.heartbeat_at)
                .limit(BATCH)
            ).all()
        )


_previous = jobs.alias("previous")
_WAITS_FOR_OPEN = exists().where(
    _previous.c.id == jobs.c.after_job_id, _previous.c.status.in_([QUEUED_SQL, RUNNING_SQL])
)


def _resend_lost(services: Services, now: datetime, result: Sweep) -> None:
    settings = services.settings
    ready = and_(jobs.c.status == QUEUED_SQL, ~_WAITS_FOR_OPEN, jobs.c.waiting_slot.is_(False))
    if _epoch_lost(services):
        lost = ready
    else:
        # The send after commit failed, or a follower's wake-up was lost (enqueued_at cleared or never
        # set): send the saga again. A job merely waiting in a backlog is left alone (a resend would
        # only add duplicates); one whose process died between commit and send fails after
        # JOB_QUEUE_TIMEOUT_S with its hold released.
        cutoff = now - timedelta(seconds=settings.JOB_REENQUEUE_AFTER_S)
        lost = and_(ready, jobs.c.enqueued_at.is_(None), jobs.c.created_at < cutoff)
    too_old = and_(
        jobs.c.status == QUEUED_SQL, jobs.c.created_at < now - timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_S)
    )
    with services.uow(autocommit=True) as db:
        rows = db.execute(
            select(jobs.c.id, jobs.c.queue, jobs.c.priority, jobs.c.enqueues, jobs.c.after_job_id)
            .where(lost)
            .order_by(jobs.c.created_at)
            .limit(BATCH)
        ).all()
        stale = list(db.execute(select(jobs.c.id).where(too_old).limit(BATCH)).scalars())
        waiting = db.execute(
            select(jobs.c.user_id, jobs.c.queue)
            .distinct()
            .where(jobs.c.status == QUEUED_SQL, jobs.c.waiting_slot.is_(True))
            .limit(BATCH)
        ).all()
    result.abandoned += _each(
        result,
        "abandoning a job never started",
        stale,
        lambda job_id: compensation.fail(
            services,
            job_id=job_id,
            code="not_started",
            message="no worker started the job in time",
            statuses=("queued",),
        ),
    )
    todo = [row for row in rows if row.id not in set(stale)]
    exhausted = [row for row in todo if row.enqueues >= MAX_ENQUEUES]
    result.abandoned += _each(
        result,
        "abandoning a job that could not be queued",
        exhausted,
        lambda row: compensation.fail(
            services,
            job_id=row.id,
            code="not_started",
            message="the job could not be queued",
            statuses=("queued",),
        ),
    )
    result.reenqueued += _each(
        result,
        "re-sending a lost saga",
        [row for row in todo if row not in exhausted],
        lambda row: _resend(services, row),
    )
    # A slot-waiter's wake-up may have been lost with the process that ended its user's job.
    result.woken += _each(
        result,
        "waking a job waiting for a slot",
        waiting,
        lambda row: dispatch.wake_slot_waiter(services, user_id=row.user_id, queue=row.queue),
    )
    if result.reenqueued:
        log.warning("re-sent %d queued jobs whose messages were lost", result.reenqueued)


def _resend(services: Services, row: Any) -> bool:
    # A follower's first send is its wake-up: it does not count against MAX_ENQUEUES.
    return dispatch.resend(
        services, job_id=row.id, queue=row.queue, priority=row.priority, counted=row.after_job_id is None
    )


def _on_expired_holds(services: Services) -> list[str]:
    # A hold outlives its job's time limit, so an open job on an expired hold is lost; a join (not
    # the list of holds this pass expired) also catches what a crashed pass left behind.
    with services.uow(autocommit=True) as db:
        return list(
            db.execute(
                select(jobs.c.id)
                .join(holds, holds.c.id == jobs.c.hold_id)
                .where(jobs.c.status.in_([QUEUED_SQL, RUNNING_SQL]), holds.c.status == "expired")
                .limit(BATCH)
            ).scalars()
        )
