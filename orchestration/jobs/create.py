"""Job use cases: create (quote + hold + row in one transaction, saga after commit), read, cancel."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Connection, Row, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

import ledger
from orchestration.accounts.api_keys import reserve_daily_allowance, return_daily_allowance
from orchestration.accounts.spending import check_spending
from orchestration.errors import DailyLimitExceeded, JobAlreadyFinished, JobKeyConflict, JobNotFound
from orchestration.jobs import balances, dispatch, meters, progress
from orchestration.jobs.kinds import DryRunQuoted, get_kind
from orchestration.notify import moves, thresholds
from orchestration.services import Services
from orchestration.tables import FINAL_STATUSES, QUEUED_SQL, jobs
from runtime.limits import job_limit_s

log = logging.getLogger(__name__)
# A hold outlives the longest a job may wait in its queue plus its time limit, by this much, so
# the reaper (not the hold's expiry) decides what happens to a job that waited or ran too long.
HOLD_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class CreateJob:
    """Command: start a job of `kind` for `user_id`; `params` are already validated.

    `request` is what the client sent (default: `params`): an Idempotency-Key replay compares its hash,
    because params may hold values derived per attempt (a message id, a token count)."""

    user_id: str
    kind: str
    params: Mapping[str, Any]
    idempotency_key: str | None = None
    priority: int = 5
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    request: Mapping[str, Any] | None = None
    after_job_id: str | None = None  # start only once this job ended (a conversation's previous turn)
    job_id: str | None = None  # chosen by the caller when other rows of its transaction name the job
    # Validate and quote only: insert_job raises DryRunQuoted where the hold would be placed, so the
    # caller's transaction (a chat turn's message, say) rolls back and nothing is held or created.
    dry_run: bool = False

    def request_hash(self) -> str:
        """SHA-256 of the kind and the client's request, in canonical JSON."""
        body = {"kind": self.kind, "request": self.params if self.request is None else self.request}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# Built once (the values are bound per call): constructing a statement costs more client CPU than running it.
# The insert also answers the job's place in its queue (the queued jobs of that queue before it: lower
# priority number first, then older), so announcing it costs no second round trip. The subquery reads
# the statement's snapshot: the new row itself is not in it.
_QUEUE_POSITION = (
    select(func.count())
    .select_from(jobs)
    .where(
        jobs.c.status == QUEUED_SQL,
        jobs.c.queue == bindparam("b_queue", type_=jobs.c.queue.type),
        (jobs.c.priority < bindparam("b_priority", type_=jobs.c.priority.type))
        | (
            (jobs.c.priority == bindparam("b_priority", type_=jobs.c.priority.type))
            & (jobs.c.created_at < bindparam("b_created", type_=jobs.c.created_at.type))
        ),
    )
    .scalar_subquery()
)
_INSERT_JOB = jobs.insert().returning(*jobs.c, _QUEUE_POSITION.label("queue_position"))
_JOB_OF_USER = select(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.user_id == bindparam("user_id"))


def _now() -> datetime:
    return datetime.now(UTC)


def create_job(services: Services, command: CreateJob) -> tuple[Row[Any], bool]:
    """Quote, hold and insert in one money unit of work, then enqueue; returns (job, created)."""
    if command.idempotency_key and not command.dry_run:
        existing = find_by_key(services, command)
        if existing is not None:
            return existing, False
    try:
        with services.uow(account_of=command.user_id) as db:
            row = insert_job(db, services, command)
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert; answer its job.
        existing = find_by_key(services, command) if command.idempotency_key else None
        if existing is None:
            raise
        return existing, False
    start_job(services, row)
    return row, True


def insert_job(db: Connection, services: Services, command: CreateJob) -> Row[Any]:
    """The transactional part of creating a job: hold, daily allowance, row (in a money unit of work).

    The unit locked the user's account first, so the hold and the API key's allowance can't deadlock
    with a settle or cancel of the same user's jobs (orchestration/uow.py)."""
    kind = get_kind(command.kind)
    quote = kind.price(command.params)
    queue = kind.queue_for(command.params)
    time_limit_s = job_limit_s(kind.requested_limit_s(command.params), queue, services.settings)
    if command.dry_run:
        raise DryRunQuoted(quote)
    job_id = command.job_id or uuid.uuid4().hex
    now = _now()
    check_spending(db, user_id=command.user_id, amount=quote.amount, now=now)  # before anything is held
    hold = ledger.hold(
        db,
        user_id=command.user_id,
        amount=quote.amount,
        expires_at=now
        + timedelta(seconds=services.settings.JOB_QUEUE_TIMEOUT_S + time_limit_s)
        + HOLD_MARGIN,
        reference=f"job:{job_id}",
        idempotency_key=f"job:{job_id}",
    )
    thresholds.check_debit(db, user_id=command.user_id)  # a compare unless the user watches their balance
    if command.api_key_id and not reserve_daily_allowance(db, key_id=command.api_key_id, amount=quote.amount):
        raise DailyLimitExceeded(limit=command.daily_credit_limit or 0, required=quote.amount)
    return db.execute(
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
            "request_hash": command.request_hash(),
            "api_key_id": command.api_key_id,
            "time_limit_s": time_limit_s,
            "after_job_id": command.after_job_id,
            "created_at": now,
            "b_queue": queue,
            "b_priority": command.priority,
            "b_created": now,
            # A job that waits for another is sent by that one's end (or by the reaper, which looks
            # for waiting jobs never sent: enqueued_at NULL).
            "enqueued_at": None if command.after_job_id else now,
            "enqueues": 1,
        },
    ).one()


def start_job(services: Services, row: Row[Any]) -> None:
    """After the job's commit: announce it and send its saga, unless it waits for another job."""
    meters.held(row.kind, row.cost_held)
    waits = False
    if row.after_job_id is not None:
        with services.uow(autocommit=True) as db:
            waits = dispatch.predecessor_open(db, row.after_job_id)
    fields: dict[str, Any] = {"queue_position": row.queue_position}
    if waits:
        fields["waiting_for"] = row.after_job_id
    progress.publish_job_event(services.redis, row.id, "queued", held=row.cost_held, spent=0, **fields)
    if row.after_job_id is None:
        dispatch.send(services, job_id=row.id, queue=row.queue, priority=row.priority)
    elif not waits:
        # The job it waited for ended before this one committed (its wake-up may have sent it too: harmless).
        dispatch.resend(services, job_id=row.id, queue=row.queue, priority=row.priority, counted=False)


def find_by_key(services: Services, command: CreateJob) -> Row[Any] | None:
    """The job made earlier with this key; JobKeyConflict if it was made for another request."""
    with services.uow(autocommit=True) as db:
        row = db.execute(
            select(jobs).where(
                jobs.c.user_id == command.user_id, jobs.c.idempotency_key == command.idempotency_key
            )
        ).first()
    if row is not None and (row.kind != command.kind or row.request_hash != command.request_hash()):
        raise JobKeyConflict(str(command.idempotency_key))
    return row


def get_job(services: Services, *, user_id: str, job_id: str) -> Row[Any]:
    """The user's job; JobNotFound for anyone else's (callers answer 404)."""
    with services.uow(autocommit=True) as db:
        row = db.execute(_JOB_OF_USER, {"job_id": job_id, "user_id": user_id}).first()
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
    with services.uow(autocommit=True) as db:
        return list(db.execute(query).all())


def cancel_job(services: Services, *, user_id: str, job_id: str) -> str:
    """Cancel: a queued job, or a running one whose worker is gone, ends now with its hold voided; a
    running one stops at its next check and pays what it delivered. Answers the job's status now."""
    job = get_job(services, user_id=user_id, job_id=job_id)
    if job.status in FINAL_STATUSES:
        raise JobAlreadyFinished(job.status)
    stale = _now() - timedelta(seconds=services.settings.JOB_HEARTBEAT_TIMEOUT_S)
    with services.uow(account_of=user_id) as db:
        ended = db.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                (jobs.c.status == "queued")
                | ((jobs.c.status == "running") & (jobs.c.heartbeat_at < stale) & ~jobs.c.run_completed),
            )
            .values(
                status="canceled",
                cancel_requested=True,
                finished_at=_now(),
                cost_charged=0,
                cost_released=jobs.c.cost_held,
            )
            .returning(
                jobs.c.hold_id, jobs.c.cost_held, jobs.c.api_key_id, jobs.c.created_at, jobs.c.queue,
                jobs.c.kind,
            )
        ).first()
        # A hold the reaper expired meanwhile gave its credits back already: the cancel still ends the job.
        voided = (
            balances.release_hold(db, ended.hold_id, key=f"cancel:{job_id}") if ended is not None else None
        )
        if ended is not None:
            moves.job_ended(db, user_id=user_id, job_id=job_id, kind=ended.kind, status="canceled", charged=0)
        if ended is not None and ended.api_key_id:
            return_daily_allowance(
                db, key_id=ended.api_key_id, amount=ended.cost_held, today=balances.utc_day(ended.created_at)
            )
        if ended is None:
            # The database is the record of the request: a running step reads it with its heartbeat
            # even if the Redis flag below is lost.
            flagged = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(("queued", "running")))
                .values(cancel_requested=True)
                .returning(jobs.c.status)
            ).first()
            if flagged is None:  # it ended between our read and this update
                raise JobAlreadyFinished(get_job(services, user_id=user_id, job_id=job_id).status)
    if ended is not None:
        progress.publish_job_event(
            services.redis, job_id, "canceled", held=ended.cost_held, spent=0, status="canceled"
        )
        balances.notify_balance(services, user_id, voided.balance if voided else None)
        dispatch.wake_after(services, job_id=job_id, user_id=user_id, queue=ended.queue)
        return "canceled"
    try:
        progress.request_cancel(services.redis, job_id)
    except redis.RedisError as exc:  # the heartbeat brings the database's flag to the step instead
        log.warning(
            "cancel flag of job %s not set in Redis (%s); the step sees it from the database", job_id, exc
        )
    return "canceling"
