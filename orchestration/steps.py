"""The saga's steps as plain functions: claim + run, settle, compensate. Tasks only call these."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import String, and_, bindparam, case, or_, select, update

import ledger
from ledger.amounts import credits_text
from orchestration import progress
from orchestration.api_keys import return_daily_allowance
from orchestration.bootstrap import Services
from orchestration.context import RunContext
from orchestration.errors import StepError
from orchestration.kinds import get_kind
from orchestration.tables import jobs
from runtime.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A job this delivery of `run` owns."""

    id: str
    user_id: str
    kind: str
    params: dict[str, Any]
    model: str | None
    held: int
    attempt: int
    hold_id: str | None


def _now() -> datetime:
    return datetime.now(UTC)


# The hot statements are built once: building an UPDATE with its CASE expressions costs more client
# CPU than sending it. Bound names differ from column names (SQLAlchemy reserves those for SET).
_CLAIMED_COLUMNS = (
    jobs.c.user_id,
    jobs.c.kind,
    jobs.c.params,
    jobs.c.model,
    jobs.c.cost_held,
    jobs.c.attempts,
    jobs.c.hold_id,
)
_CLAIM_SET = {
    "status": "running",
    "claim": bindparam("b_token", type_=jobs.c.claim.type),
    "attempts": jobs.c.attempts + 1,
    "started_at": case(
        (jobs.c.started_at.is_(None), bindparam("b_now", type_=jobs.c.started_at.type)),
        else_=jobs.c.started_at,
    ),
}
_CLAIM = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_job_id"), jobs.c.status == "queued")
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)
# A retry of our own running attempt claims even when cancel was asked for, so its step sees the
# flag at once and settle ends the job `canceled` (a canceled queued job is already `canceled`).
_RECLAIM = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        or_(
            jobs.c.status == "queued",
            and_(jobs.c.status == "running", jobs.c.claim == bindparam("b_previous", type_=String())),
        ),
    )
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)


def claim(services: Services, *, job_id: str, token: str, previous: str | None) -> Claimed | None:
    """Compare-and-set `queued -> running` (or take over our own retried attempt); None if taken."""
    params = {"b_job_id": job_id, "b_token": token, "b_now": _now()}
    statement = _CLAIM
    if previous:
        statement, params["b_previous"] = _RECLAIM, previous
    with services.statement() as connection:
        row = connection.execute(statement, params).first()
    if row is None:
        return None
    return Claimed(
        job_id, row.user_id, row.kind, dict(row.params), row.model, row.cost_held, row.attempts, row.hold_id
    )


def run(services: Services, job: Claimed, *, token: str) -> bool:
    """Run the kind's step and record its outcome; False if the job was taken from us meanwhile."""
    context = RunContext(services, job.id, job.user_id, job.params, job.model, job.held, job.attempt)
    if job.attempt == 1:
        progress.publish_job_event(services.redis, job.id, "started", held=job.held, spent=0)
    try:
        result = dict(get_kind(job.kind).run(context))
    except StepError as exc:
        _record_error(services, job.id, token, code=exc.code, message=str(exc), spent=context.spent)
        raise
    except Exception as exc:
        _record_error(
            services, job.id, token, code="internal", message=type(exc).__name__, spent=context.spent
        )
        raise
    params = {
        "b_job_id": job.id,
        "b_token": token,
        "b_result": result,
        "b_spent": context.spent,
        "b_progress": context.last_progress,
        "b_canceled": context.canceled,
    }
    with services.statement() as connection:
        return connection.execute(_RECORD_RUN, params).rowcount == 1


_RECORD_RUN = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.claim == bindparam("b_token", type_=jobs.c.claim.type),
        jobs.c.status == "running",
    )
    .values(
        run_completed=True,
        result=bindparam("b_result", type_=jobs.c.result.type),
        error=None,  # an earlier retried attempt's error no longer describes the job
        cost_running=bindparam("b_spent", type_=jobs.c.cost_running.type),
        progress=bindparam("b_progress", type_=jobs.c.progress.type),
        cancel_requested=bindparam("b_canceled", type_=jobs.c.cancel_requested.type),
    )
)


def _record_error(
    services: Services, job_id: str, token: str, *, code: str, message: str, spent: int
) -> None:
    with transaction(services.sessions) as session:
        session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.claim == token)
            .values(error={"code": code, "message": message}, cost_running=spent)
        )


def settle(services: Services, *, job_id: str) -> str | None:
    """Capture the delivered cost, release the rest, end the job: one transaction, exactly once."""
    try:
        with services.engine.begin() as connection:  # a plain connection: no ORM unit of work to pay for
            row = connection.execute(_SETTLE, {"b_job_id": job_id, "b_now": _now()}).first()
            if row is None:
                return None  # already settled, or failed by the reaper: a late settle changes nothing
            on_settled = get_kind(row.kind).on_settled
            if on_settled is not None:
                on_settled(connection, row)
            settlement = None
            if row.hold_id and row.cost_charged > 0:
                settlement = ledger.capture(
                    connection,
                    hold_id=row.hold_id,
                    amount=row.cost_charged,
                    idempotency_key=f"settle:{job_id}",
                )
            elif row.hold_id:
                settlement = ledger.void(connection, hold_id=row.hold_id, idempotency_key=f"settle:{job_id}")
            if row.api_key_id:
                return_daily_allowance(
                    connection,
                    key_id=row.api_key_id,
                    amount=row.cost_held - row.cost_charged,
                    today=utc_day(row.created_at),
                )
            balance = (settlement and settlement.balance) or ledger.balance(connection, user_id=row.user_id)
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
    return str(row.status)


_CHARGED = case((jobs.c.cost_running < jobs.c.cost_held, jobs.c.cost_running), else_=jobs.c.cost_held)
_SETTLE = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_job_id"), jobs.c.status == "running", jobs.c.run_completed.is_(True))
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
) -> bool:
    """Compensate: void the hold and mark the job failed, once; False if it already ended."""
    with transaction(services.sessions) as session:
        row = session.execute(
            select(jobs.c.error).where(jobs.c.id == job_id, jobs.c.status.in_(statuses))
        ).first()
        if row is None:
            return False
        error = row.error or {"code": code, "message": message}
        ended = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(statuses))
            .values(
                status="failed",
                finished_at=_now(),
                cost_charged=0,
                cost_released=jobs.c.cost_held,
                error=error,
            )
            .returning(jobs.c.user_id, jobs.c.hold_id, jobs.c.cost_held, jobs.c.api_key_id, jobs.c.created_at)
        ).first()
        if ended is None:
            return False
        _void(session, ended.hold_id, key=f"compensate:{job_id}")
        if ended.api_key_id:
            return_daily_allowance(
                session, key_id=ended.api_key_id, amount=ended.cost_held, today=utc_day(ended.created_at)
            )
        balance = ledger.balance(session, user_id=ended.user_id)
    progress.publish_job_event(
        services.redis,
        job_id,
        "failed",
        held=ended.cost_held,
        spent=0,
        status="failed",
        error=error,
        owner_balance=(ended.user_id, balance_fields(balance)),
    )
    return True


def _void(session: Any, hold_id: str | None, *, key: str) -> None:
    if hold_id is None:
        return
    # Expired or voided already: the credits are back either way.
    with contextlib.suppress(ledger.HoldAlreadyResolved):
        ledger.void(session, hold_id=hold_id, idempotency_key=key)


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
        with services.statement() as connection:
            balance = ledger.balance(connection, user_id=user_id)
    progress.publish_user_event(services.redis, user_id, "balance", **balance_fields(balance))
