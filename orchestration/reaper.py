"""The reaper: ends what nobody will finish, each by compare-and-set so late steps change nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, select

import ledger
from ledger.tables import holds
from orchestration import broker, steps
from orchestration import jobs as job_cases
from orchestration.bootstrap import Services
from orchestration.tables import jobs
from runtime.db import transaction

log = logging.getLogger(__name__)
# Grace after a job's time limit: the worker's own hard limit fires first, then the errback.
RUNNING_GRACE = timedelta(seconds=30)
MAX_ENQUEUES = 5
BATCH = 200


@dataclass
class Sweep:
    """What one pass of the reaper did."""

    timed_out: int = 0
    expired_holds: int = 0
    reenqueued: int = 0
    abandoned: int = 0
    expired_lots: int = 0


def _epoch_lost(services: Services) -> bool:
    # Redis without persistence forgets queued messages when it restarts, and this key with them.
    return broker.epoch_lost(services)  # on the broker's own Redis, not REDIS_URL


def sweep(services: Services, *, now: datetime | None = None) -> Sweep:
    """One pass: fail overrun jobs, re-send lost sagas, expire holds and lots."""
    now = now or datetime.now(UTC)
    result = Sweep()
    result.timed_out = _fail_overrun(services, now)
    result.reenqueued, result.abandoned = _resend_lost(services, now, epoch_lost=_epoch_lost(services))
    with transaction(services.sessions) as session:
        result.expired_holds = ledger.expire_holds(session, now=now)
    result.timed_out += _fail_jobs_on_expired_holds(services)
    with transaction(services.sessions) as session:
        result.expired_lots = ledger.expire_lots(session, now=now)
    return result


def _fail_overrun(services: Services, now: datetime) -> int:
    with services.sessions() as session:
        rows = session.execute(
            select(jobs.c.id, jobs.c.started_at, jobs.c.time_limit_s, jobs.c.run_completed)
            .where(jobs.c.status == "running")
            .order_by(jobs.c.started_at)
            .limit(BATCH * 5)
        ).all()
    overrun = [
        r
        for r in rows
        if r.started_at and _aware(r.started_at) + timedelta(seconds=r.time_limit_s) + RUNNING_GRACE < now
    ][:BATCH]
    ended = 0
    for row in overrun:
        if row.run_completed:
            # The work was delivered but its settle message was lost: bill it, don't throw it away.
            ended += steps.settle(services, job_id=row.id) is not None
        else:
            ended += steps.fail(
                services,
                job_id=row.id,
                code="timed_out",
                message="the job ran past its time limit",
                statuses=("running",),
            )
    return ended


def _resend_lost(services: Services, now: datetime, *, epoch_lost: bool) -> tuple[int, int]:
    settings = services.settings
    if epoch_lost:
        lost = jobs.c.status == "queued"
    else:
        # The send after commit failed (enqueued_at cleared): send the saga again. A job merely
        # waiting in a backlog is left alone (a resend would only add duplicates); one whose process
        # died between commit and send fails after JOB_QUEUE_TIMEOUT_S with its hold released.
        cutoff = now - timedelta(seconds=settings.JOB_REENQUEUE_AFTER_S)
        lost = and_(jobs.c.status == "queued", jobs.c.enqueued_at.is_(None), jobs.c.created_at < cutoff)
    too_old = and_(
        jobs.c.status == "queued", jobs.c.created_at < now - timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_S)
    )
    with services.sessions() as session:
        rows = session.execute(
            select(jobs.c.id, jobs.c.queue, jobs.c.priority, jobs.c.enqueues)
            .where(lost)
            .order_by(jobs.c.created_at)
            .limit(BATCH)
        ).all()
        stale = set(session.execute(select(jobs.c.id).where(too_old).limit(BATCH)).scalars())
    abandoned = sum(
        steps.fail(
            services,
            job_id=job_id,
            code="not_started",
            message="no worker started the job in time",
            statuses=("queued",),
        )
        for job_id in stale
    )
    resent = 0
    for row in rows:
        if row.id in stale:
            continue
        if row.enqueues >= MAX_ENQUEUES:
            abandoned += steps.fail(
                services,
                job_id=row.id,
                code="not_started",
                message="the job could not be queued",
                statuses=("queued",),
            )
            continue
        resent += job_cases.enqueue(services, job_id=row.id, queue=row.queue, priority=row.priority)
    if resent:
        log.warning("re-sent %d queued jobs whose messages were lost", resent)
    return resent, abandoned


def _fail_jobs_on_expired_holds(services: Services) -> int:
    # A hold outlives its job's time limit, so an open job on an expired hold is lost; a join (not
    # the list of holds this pass expired) also catches what a crashed pass left behind.
    with services.sessions() as session:
        lost = (
            session.execute(
                select(jobs.c.id)
                .join(holds, holds.c.id == jobs.c.hold_id)
                .where(jobs.c.status.in_(("queued", "running")), holds.c.status == "expired")
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
    return sum(
        steps.fail(services, job_id=job_id, code="hold_expired", message="the credit hold expired")
        for job_id in lost
    )


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
