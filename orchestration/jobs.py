"""Job use cases: create (quote + hold + row in one transaction, saga after commit), read, cancel."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.exc import IntegrityError

import ledger
from orchestration import progress, sagas, steps
from orchestration.api_keys import reserve_daily_allowance, return_daily_allowance
from orchestration.bootstrap import Services
from orchestration.errors import DailyLimitExceeded, JobAlreadyFinished, JobKeyConflict, JobNotFound
from orchestration.kinds import get_kind
from orchestration.tables import FINAL_STATUSES, jobs
from runtime.db import transaction

log = logging.getLogger(__name__)
# A hold outlives the longest a job may wait in its queue plus its time limit, by this much, so
# the reaper (not the hold's expiry) decides what happens to a job that waited or ran too long.
HOLD_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class CreateJob:
    """Command: start a job of `kind` for `user_id`; `params` are already validated."""

    user_id: str
    kind: str
    params: Mapping[str, Any]
    idempotency_key: str | None = None
    priority: int = 5
    api_key_id: str | None = None
    daily_credit_limit: int | None = None


# Built once (the values are bound per call): constructing a statement costs more client CPU than running it.
_INSERT_JOB = jobs.insert().returning(*jobs.c)
_JOB_OF_USER = select(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.user_id == bindparam("user_id"))


def _now() -> datetime:
    return datetime.now(UTC)


def create_job(services: Services, command: CreateJob) -> tuple[Row[Any], bool]:
    """Quote, hold and insert in one transaction, then enqueue; returns (job, created)."""
    kind = get_kind(command.kind)
    if command.idempotency_key:
        existing = _by_key(services, command)
        if existing is not None:
            return existing, False
    quote = kind.price(command.params)
    queue, time_limit_s = kind.queue_for(command.params), kind.time_limit_for(command.params)
    job_id = uuid.uuid4().hex
    now = _now()
    try:
        with services.engine.begin() as connection:  # a plain connection: no ORM unit of work to pay for
            if command.api_key_id and not reserve_daily_allowance(
                connection, key_id=command.api_key_id, amount=quote.amount
            ):
                raise DailyLimitExceeded(limit=command.daily_credit_limit or 0, required=quote.amount)
            hold = ledger.hold(
                connection,
                user_id=command.user_id,
                amount=quote.amount,
                expires_at=now
                + timedelta(seconds=services.settings.JOB_QUEUE_TIMEOUT_S + time_limit_s)
                + HOLD_MARGIN,
                reference=f"job:{job_id}",
                idempotency_key=f"job:{job_id}",
            )
            row = connection.execute(
                _INSERT_JOB,
                {
                    "id": job_id,
                    "user_id": command.user_id,
                    "kind": kind.name,
                    "status": "queued",
                    "queue": queue,
                    "priority": command.priority,
                    "params": dict(command.params),
                    "model": kind.model(command.params),
                    "quote": quote.as_json(),
                    "hold_id": hold.id,
                    "cost_quoted": quote.amount,
                    "cost_held": hold.amount,
                    "idempotency_key": command.idempotency_key,
                    "api_key_id": command.api_key_id,
                    "time_limit_s": time_limit_s,
                    "created_at": now,
                    "enqueued_at": now,
                    "enqueues": 1,
                },
            ).one()
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert; answer its job.
        if command.idempotency_key:
            existing = _by_key(services, command)
            if existing is not None:
                return existing, False
        raise
    progress.publish_job_event(services.redis, job_id, "queued", held=hold.amount, spent=0)
    if not _send(services, job_id=job_id, queue=queue, priority=command.priority):
        with transaction(services.sessions) as session:  # tell the reaper to send it again soon
            session.execute(update(jobs).where(jobs.c.id == job_id).values(enqueued_at=None))
    return row, True


def _send(services: Services, *, job_id: str, queue: str, priority: int) -> bool:
    try:
        sagas.send(services.producer, sagas.job_saga(queue), job_id, priority=priority)
    except Exception:  # the broker may be down: the job stays queued, the reaper re-sends it
        log.exception("could not enqueue job %s; the reaper will retry", job_id)
        return False
    return True


def enqueue(services: Services, *, job_id: str, queue: str, priority: int) -> bool:
    """Send the saga again (the reaper) and count it; duplicates are harmless, `run` claims once."""
    if not _send(services, job_id=job_id, queue=queue, priority=priority):
        return False
    with transaction(services.sessions) as session:
        session.execute(
            update(jobs).where(jobs.c.id == job_id).values(enqueued_at=_now(), enqueues=jobs.c.enqueues + 1)
        )
    return True


def _by_key(services: Services, command: CreateJob) -> Row[Any] | None:
    """The job made earlier with this key; JobKeyConflict if it was made for another request."""
    with services.statement() as connection:
        row = connection.execute(
            select(jobs).where(
                jobs.c.user_id == command.user_id, jobs.c.idempotency_key == command.idempotency_key
            )
        ).first()
    if row is not None and (row.kind != command.kind or row.params != dict(command.params)):
        raise JobKeyConflict(str(command.idempotency_key))
    return row


def get_job(services: Services, *, user_id: str, job_id: str) -> Row[Any]:
    """The user's job; JobNotFound for anyone else's (callers answer 404)."""
    with services.statement() as connection:
        row = connection.execute(_JOB_OF_USER, {"job_id": job_id, "user_id": user_id}).first()
    if row is None:
        raise JobNotFound(job_id)
    return row


def list_jobs(
    services: Services,
    *,
    user_id: str,
    limit: int,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> list[Row[Any]]:
    """The user's jobs, newest first, after an optional (created_at, id) cursor."""
    query = select(jobs).where(jobs.c.user_id == user_id)
    if status:
        query = query.where(jobs.c.status == status)
    if kind:
        query = query.where(jobs.c.kind == kind)
    if before is not None:
        created, job_id = before
        query = query.where(
            (jobs.c.created_at < created) | ((jobs.c.created_at == created) & (jobs.c.id < job_id))
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    with services.statement() as connection:
        return list(connection.execute(query).all())


def cancel_job(services: Services, *, user_id: str, job_id: str) -> str:
    """Cancel: a queued job ends now with its hold voided; a running one stops at its next check."""
    job = get_job(services, user_id=user_id, job_id=job_id)
    if job.status in FINAL_STATUSES:
        raise JobAlreadyFinished(job.status)
    with transaction(services.sessions) as session:
        ended = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == "queued")
            .values(
                status="canceled",
                cancel_requested=True,
                finished_at=_now(),
                cost_charged=0,
                cost_released=jobs.c.cost_held,
            )
            .returning(jobs.c.hold_id, jobs.c.cost_held, jobs.c.api_key_id, jobs.c.created_at)
        ).first()
        voided = None
        if ended is not None and ended.hold_id:
            voided = ledger.void(session, hold_id=ended.hold_id, idempotency_key=f"cancel:{job_id}")
        if ended is not None and ended.api_key_id:
            return_daily_allowance(
                session,
                key_id=ended.api_key_id,
                amount=ended.cost_held,
                today=steps.utc_day(ended.created_at),
            )
        if ended is None:
            session.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
    if ended is not None:
        progress.publish_job_event(
            services.redis, job_id, "canceled", held=ended.cost_held, spent=0, status="canceled"
        )
        steps.notify_balance(services, user_id, voided.balance if voided else None)
        return "canceled"
    progress.request_cancel(services.redis, job_id)
    return "canceling"
