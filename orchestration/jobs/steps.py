"""The saga's steps as plain functions: run (after its claim, orchestration/jobs/claims.py) and settle;
compensation is orchestration/jobs/compensation.py. Tasks only call these.

Every change of a job's status is a compare-and-set, and every one that moves money runs in a money
unit of work (orchestration/uow.py: the owner's account row is locked first), so a late or duplicated
step changes nothing and no two steps deadlock."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, null, or_, update

import ledger
from orchestration.accounts.api_keys import return_daily_allowance
from orchestration.context import RunContext
from orchestration.errors import StepError
from orchestration.jobs import dispatch, meters, progress, receipts
from orchestration.jobs.balances import balance_fields, utc_day
from orchestration.jobs.claims import Claimed
from orchestration.jobs.compensation import fail
from orchestration.jobs.heartbeats import Beating, heartbeats_of
from orchestration.jobs.kinds import get_kind
from orchestration.notify import moves
from orchestration.services import Services
from orchestration.tables import RUNNING_SQL, jobs

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


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
        services, job.id, job.user_id, job.params, job.model, job.held, job.attempt, deadline=_deadline(job),
        kind=job.kind,
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
            # Marked in this transaction (the owner's account is locked already), sent after its commit.
            woken = dispatch.mark_woken(services, db, job_id=job_id, user_id=row.user_id, queue=row.queue)
            # No low-balance check: a settle gives back what the hold took beyond the cost, never less.
            moves.job_ended(
                db, user_id=row.user_id, job_id=job_id, kind=row.kind, status=row.status,
                charged=row.cost_charged,
            )
    except ledger.HoldAlreadyResolved as exc:
        # The hold expired before settlement (it must outlive the time limit; this is the backstop):
        # the job fails and nothing is charged.
        log.error("job %s could not settle: %s", job_id, exc)
        fail(
            services, job_id=job_id, code="hold_expired", message="the credit hold expired before settlement"
        )
        return "failed"
    meters.ended(
        kind=row.kind, model=row.model, status=row.status, charged=row.cost_charged,
        released=row.cost_released, started_at=row.started_at, finished_at=row.finished_at,
    )
    final = "result" if row.status == "succeeded" else "canceled"
    progress.publish_job_event(
        services.redis,
        job_id,
        final,
        held=row.cost_held,
        spent=row.cost_charged,
        status=row.status,
        result=row.result,
        receipt=receipts.settled(row, settlement, charged=row.cost_charged, released=row.cost_released),
        owner_balance=(row.user_id, balance_fields(balance)),
    )
    dispatch.send_woken(services, woken)
    return str(row.status)


def settle_in_place(services: Services, *, job_id: str) -> bool:
    """Settle right after the run, in the run's own task: one Celery message less per job.

    False if it could not (the database or Redis failed it): the chain's `settle` on critical then
    settles with its retries. Both are the same compare-and-set, so the job is settled once either way."""
    try:
        settle(services, job_id=job_id)
    except Exception:
        log.warning(
            "job %s: settling in place failed; the critical queue's settle takes over", job_id, exc_info=True
        )
        return False
    return True


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
