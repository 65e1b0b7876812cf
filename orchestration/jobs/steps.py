"""The saga's steps as plain functions: claim + run, settle, compensate. Tasks only call these.

Every change of a job's status is a compare-and-set, and every one that moves money runs in a money
unit of work (orchestration/uow.py: the owner's account row is locked first), so a late or duplicated
step changes nothing and no two steps deadlock.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, exists, func, literal, null, or_, select, update

import ledger
from ledger.amounts import credits_text
from orchestration.accounts.api_keys import return_daily_allowance
from orchestration.bootstrap import Services
from orchestration.context import RunContext
from orchestration.errors import StepError
from orchestration.jobs import dispatch, progress
from orchestration.jobs.heartbeats import Beating, heartbeats_of
from orchestration.jobs.kinds import get_kind
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A job this delivery of `run` owns; `taken_over` if a redelivery took it from a dead worker."""

    id: str
    user_id: str
    kind: str
    params: dict[str, Any]
    model: str | None
    held: int
    attempt: int
    hold_id: str | None
    token: str
    started_at: datetime
    time_limit_s: int
    queue: str
    taken_over: bool = False
    cancel_requested: bool = False
    recorded: bool = False  # the run already finished and was recorded: only settlement is left


def _now() -> datetime:
    return datetime.now(UTC)


def claim_token(task_id: str, retries: int) -> str:
    """A claim: the delivery (task id and retry number) and a nonce of this process's attempt."""
    return f"{task_id}:{retries}:{uuid.uuid4().hex[:8]}"


# The hot statements are built once: building an UPDATE with its CASE expressions costs more client
# CPU than sending it. Bound names differ from column names (SQLAlchemy reserves those for SET).
_previous = jobs.alias("previous")
_others = jobs.alias("others")
_PREDECESSOR_OPEN = exists().where(
    _previous.c.id == jobs.c.after_job_id, _previous.c.status.in_([QUEUED_SQL, RUNNING_SQL])
)
_RUNNING_OF_USER = (
    select(func.count())
    .select_from(_others)
    .where(
        _others.c.user_id == jobs.c.user_id, _others.c.queue == jobs.c.queue, _others.c.status == RUNNING_SQL
    )
    .scalar_subquery()
)
_CLAIMED_COLUMNS = (
    jobs.c.user_id,
    jobs.c.kind,
    jobs.c.params,
    jobs.c.model,
    jobs.c.cost_held,
    jobs.c.attempts,
    jobs.c.hold_id,
    jobs.c.started_at,
    jobs.c.time_limit_s,
    jobs.c.queue,
    jobs.c.cancel_requested,
)
_CLAIM_SET = {
    "status": "running",
    "claim": bindparam("b_token", type_=jobs.c.claim.type),
    "attempts": jobs.c.attempts + 1,
    "started_at": case(
        (jobs.c.started_at.is_(None), bindparam("b_now", type_=jobs.c.started_at.type)),
        else_=jobs.c.started_at,
    ),
    "heartbeat_at": bindparam("b_now", type_=jobs.c.heartbeat_at.type),
    "waiting_slot": False,
}
# A queued job starts when nothing it waits for is open and its user has a free slot on its queue.
_CLAIM = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.status == QUEUED_SQL,
        ~_PREDECESSOR_OPEN,
        bindparam("b_cap") > _RUNNING_OF_USER,
    )
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)
# A running job is taken over by its own delivery: a retry of our attempt (previous retry number), or
# the same message redelivered after its process died (same retry number, another nonce).
_TAKE_OVER = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.status == RUNNING_SQL,
        # Celery task ids are UUIDs: no LIKE wildcards to escape.
        jobs.c.claim.startswith(bindparam("b_delivery", type_=jobs.c.claim.type)),
        jobs.c.run_completed.is_(False),
    )
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)
# Our own delivery again after its run was recorded (its process died before the ack): the work is done
# and paid for by settlement, so nothing runs again and nothing is changed here.
_RECORDED = select(*_CLAIMED_COLUMNS, jobs.c.claim).where(
    jobs.c.id == bindparam("b_job_id"),
    jobs.c.status == RUNNING_SQL,
    jobs.c.run_completed.is_(True),
    jobs.c.claim.startswith(bindparam("b_delivery", type_=jobs.c.claim.type)),
)
# A queued job its claim refused: the delivery's message is consumed, so the job is unsent again
# (enqueued_at NULL: the reaper sends it once it is ready, if its wake-up is lost), and one that waits
# for no other job was refused for its user's slots (waiting_slot: the end of one of theirs sends it).
_REFUSED = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_job_id"), jobs.c.status == QUEUED_SQL)
    .values(enqueued_at=None, waiting_slot=~_PREDECESSOR_OPEN)
    .returning(jobs.c.user_id, jobs.c.queue, jobs.c.waiting_slot)
)


def claim(
    services: Services, *, job_id: str, task_id: str, retries: int, redelivered: bool = False
) -> Claimed | None:
    """Compare-and-set `queued -> running`, or take over our own delivery; None if it can't run now.

    A job that waits for a conversation's previous turn, or for one of its user's slots, is left
    queued (marked `waiting_slot` for the latter) and is sent again when what it waits for ends."""
    token = claim_token(task_id, retries)
    params: dict[str, Any] = {"b_job_id": job_id, "b_token": token, "b_now": _now()}
    takeovers = [f"{task_id}:{retries - 1}:"] if retries else []
    if redelivered:
        takeovers.append(f"{task_id}:{retries}:")
    # The owner's account lock makes the running-jobs count exact: two claims of one user's jobs at
    # once (an I/O pool runs hundreds of deliveries side by side) would both see a free slot.
    with services.uow(account_of_job=job_id) as db:
        row = db.execute(_CLAIM, {**params, "b_cap": services.settings.JOB_MAX_RUNNING_PER_USER}).first()
        taken_over = recorded = False
        for delivery in takeovers if row is None else ():
            row = db.execute(_TAKE_OVER, {**params, "b_delivery": delivery}).first()
            if row is not None:
                taken_over = delivery.endswith(f":{retries}:")
                break
            row = db.execute(_RECORDED, {"b_job_id": job_id, "b_delivery": delivery}).first()
            if row is not None:
                token, recorded = row.claim, True
                break
        refused = db.execute(_REFUSED, {"b_job_id": job_id}).first() if row is None else None
    if refused is not None and refused.waiting_slot:
        # Its user's slots are taken: one of their jobs may have ended since our claim counted it.
        dispatch.wake_slot_waiter(services, user_id=refused.user_id, queue=refused.queue)
    if row is None:
        return None
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
    return Claimed(
        job_id,
        row.user_id,
        row.kind,
        dict(row.params),
        row.model,
        row.cost_held,
        row.attempts,
        row.hold_id,
        token,
        started,
        row.time_limit_s,
        row.queue,
        taken_over,
        # A cancel that came while this attempt waited (a retry's countdown) is in the row even when
        # Redis lost its flag: the step must not start work it would be charged for.
        bool(row.cancel_requested),
        recorded,
    )


def _deadline(job: Claimed) -> float:
    left = (job.started_at + timedelta(seconds=job.time_limit_s) - _now()).total_seconds()
    return time.monotonic() + max(0.0, left)


def run(services: Services, job: Claimed) -> bool:
    """Run the kind's step and record its outcome; False if the job was taken from us meanwhile."""
    if job.recorded:
        return True  # on to settlement, which charges what was recorded (once: it is a compare-and-set)
    kind = get_kind(job.kind)
    if job.taken_over and not kind.restartable:
        fail(
            services,
            job_id=job.id,
            code="worker_lost",
            message="the worker running the job stopped mid-way; nothing was charged",
            statuses=("running",),
        )
        return False
    context = RunContext(
        services, job.id, job.user_id, job.params, job.model, job.held, job.attempt, deadline=_deadline(job)
    )
    if job.attempt == 1:
        progress.publish_job_event(services.redis, job.id, "started", held=job.held, spent=0)
    if job.cancel_requested:
        # Canceled while this attempt waited (a retry's countdown): nothing more runs or is charged.
        context.stop_reason = "canceled"
        return _record(services, job, context, {"canceled_before_start": True})
    beats = heartbeats_of(services)
    beats.register(Beating(job.token, context))
    try:
        result = dict(kind.run(context))
    except StepError as exc:
        _record_error(services, job.id, job.token, code=exc.code, message=str(exc), spent=context.spent)
        raise
    except Exception as exc:
        _record_error(
            services, job.id, job.token, code="internal", message=type(exc).__name__, spent=context.spent
        )
        raise
    finally:
        context.flush()
        beats.unregister(job.token)
    if context.stop_reason == "lost":
        return False
    return _record(services, job, context, result)


def _record(services: Services, job: Claimed, context: RunContext, result: dict[str, Any]) -> bool:
    params = {
        "b_job_id": job.id,
        "b_token": job.token,
        "b_result": result,
        "b_spent": context.spent,
        "b_progress": context.last_progress,
        "b_canceled": context.canceled,
    }
    with services.uow(autocommit=True) as db:
        return bool(db.execute(_RECORD_RUN, params).rowcount == 1)


_RECORD_RUN = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.claim == bindparam("b_token", type_=jobs.c.claim.type),
        jobs.c.status == RUNNING_SQL,
    )
    .values(
        run_completed=True,
        result=bindparam("b_result", type_=jobs.c.result.type),
        # An earlier retried attempt's error no longer describes the job. SQL NULL, not JSON null: a
        # later failure (an expired hold, the reaper) coalesces its own reason over a NULL only.
        error=null(),
        cost_running=bindparam("b_spent", type_=jobs.c.cost_running.type),
        progress=bindparam("b_progress", type_=jobs.c.progress.type),
        # A cancel that arrived after the step's last check still ends the job `canceled`.
        cancel_requested=or_(
            jobs.c.cancel_requested, bindparam("b_canceled", type_=jobs.c.cancel_requested.type)
        ),
    )
)


def postpone_heartbeat(services: Services, *, job_id: str, seconds: float) -> None:
    """A running job waits `seconds` for its retry: its heartbeat counts from when that retry starts."""
    with services.uow(autocommit=True) as db:
        db.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == RUNNING_SQL)
            .values(heartbeat_at=_now() + timedelta(seconds=seconds))
        )


def _record_error(
    services: Services, job_id: str, token: str, *, code: str, message: str, spent: int
) -> None:
    with services.uow(autocommit=True) as db:
        db.execute(
            update(jobs)
            # Only while it runs: a job the reaper or a cancel ended keeps the reason it ended with.
            .where(jobs.c.id == job_id, jobs.c.claim == token, jobs.c.status == RUNNING_SQL)
            .values(error={"code": code, "message": message}, cost_running=spent)
        )


def settle(services: Services, *, job_id: str) -> str | None:
    """Capture the delivered cost, release the rest, end the job: one transaction, exactly once."""
    try:
        with services.uow(account_of_job=job_id) as db:
            row = db.execute(_SETTLE, {"b_job_id": job_id, "b_now": _now()}).first()
            if row is None:
                return None  # already settled, or failed by the reaper: a late settle changes nothing
            on_settled = get_kind(row.kind).on_settled
            if on_settled is not None:
                on_settled(db, row)
            settlement = None
            if row.hold_id and row.cost_charged > 0:
                settlement = ledger.capture(
                    db, hold_id=row.hold_id, amount=row.cost_charged, idempotency_key=f"settle:{job_id}"
                )
            elif row.hold_id:
                settlement = ledger.void(db, hold_id=row.hold_id, idempotency_key=f"settle:{job_id}")
            if row.api_key_id:
                return_daily_allowance(
                    db,
                    key_id=row.api_key_id,
                    amount=row.cost_held - row.cost_charged,
                    today=utc_day(row.created_at),
                )
            balance = (settlement and settlement.balance) or ledger.balance(db, user_id=row.user_id)
    except ledger.HoldAlreadyResolved as exc:
        # The hold expired before settlement (it must outlive the time limit; this is the backstop):
        # the job fails and nothing is charged.
        log.error("job %s could not settle: %s", job_id, exc)
        fail(
            services, job_id=job_id, code="hold_expired", message="the credit hold expired before settlement"
        )
        return "failed"
    final = "result" if row.status == "succeeded" else "canceled"
    progress.publish_job_event(
        services.redis,
        job_id,
        final,
        held=row.cost_held,
        spent=row.cost_charged,
        status=row.status,
        result=row.result,
        owner_balance=(row.user_id, balance_fields(balance)),
    )
    dispatch.wake_after(services, job_id=job_id, user_id=row.user_id, queue=row.queue)
    return str(row.status)


_CHARGED = case((jobs.c.cost_running < jobs.c.cost_held, jobs.c.cost_running), else_=jobs.c.cost_held)
_SETTLE = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_job_id"), jobs.c.status == RUNNING_SQL, jobs.c.run_completed.is_(True))
    .values(
        status=case((jobs.c.cancel_requested.is_(True), "canceled"), else_="succeeded"),
        finished_at=bindparam("b_now", type_=jobs.c.finished_at.type),
        cost_charged=_CHARGED,
        cost_released=jobs.c.cost_held - _CHARGED,
    )
    .returning(*jobs.c)
)


def fail(
    services: Services,
    *,
    job_id: str,
    code: str,
    message: str,
    statuses: tuple[str, ...] = ("queued", "running"),
    status: str = "failed",
) -> bool:
    """Compensate: void the hold and end the job (`failed`, or `canceled`), once; False if it already ended.

    A step's own recorded error (the reason it failed) is kept over the generic one given here."""
    with services.uow(account_of_job=job_id) as db:
        ended = db.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(statuses))
            .values(
                status=status,
                finished_at=_now(),
                cost_charged=0,
                cost_released=jobs.c.cost_held,
                error=null()
                if status == "canceled"
                else func.coalesce(
                    jobs.c.error, literal({"code": code, "message": message}, jobs.c.error.type)
                ),
                cancel_requested=True if status == "canceled" else jobs.c.cancel_requested,
            )
            .returning(
                jobs.c.user_id,
                jobs.c.hold_id,
                jobs.c.cost_held,
                jobs.c.api_key_id,
                jobs.c.created_at,
                jobs.c.queue,
                jobs.c.error,
            )
        ).first()
        if ended is None:
            return False
        voided = release_hold(db, ended.hold_id, key=f"compensate:{job_id}")
        if ended.api_key_id:
            return_daily_allowance(
                db, key_id=ended.api_key_id, amount=ended.cost_held, today=utc_day(ended.created_at)
            )
        balance = (voided and voided.balance) or ledger.balance(db, user_id=ended.user_id)
    event: dict[str, Any] = {"error": ended.error} if status == "failed" else {}
    progress.publish_job_event(
        services.redis,
        job_id,
        status,
        held=ended.cost_held,
        spent=0,
        status=status,
        owner_balance=(ended.user_id, balance_fields(balance)),
        **event,
    )
    dispatch.wake_after(services, job_id=job_id, user_id=ended.user_id, queue=ended.queue)
    return True


def release_hold(db: Any, hold_id: str | None, *, key: str) -> ledger.Settlement | None:
    """Void an ended job's hold; None if it has none or it was resolved already (expired, voided)."""
    if hold_id is None:
        return None
    # Expired or voided already: the credits are back either way.
    with contextlib.suppress(ledger.HoldAlreadyResolved):
        return ledger.void(db, hold_id=hold_id, idempotency_key=key)
    return None


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a stored timestamp (SQLite hands back naive UTC datetimes).

    A released hold gives its allowance back to the day it was counted on, not to the day it ends."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def balance_fields(balance: ledger.Balance) -> dict[str, str]:
    """A balance as the `balance` event on the user's stream carries it (credits as decimal text)."""
    return {
        "posted": credits_text(balance.posted),
        "held": credits_text(balance.held),
        "available": credits_text(balance.available),
    }


def notify_balance(services: Services, user_id: str, balance: ledger.Balance | None = None) -> None:
    """Publish the user's new balance (read now unless given) on their event stream."""
    if balance is None:
        with services.uow(autocommit=True) as db:
            balance = ledger.balance(db, user_id=user_id)
    progress.publish_user_event(services.redis, user_id, "balance", **balance_fields(balance))
