"""The saga's compensation: a job fails (or ends canceled) and its hold is released, exactly once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal, null, update

import ledger
from orchestration.accounts.api_keys import return_daily_allowance
from orchestration.jobs import dispatch, meters, progress, receipts
from orchestration.jobs.balances import balance_fields, release_hold, utc_day
from orchestration.notify import moves
from orchestration.services import Services
from orchestration.tables import jobs

log = logging.getLogger(__name__)



def _now() -> datetime:
    return datetime.now(UTC)


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
                jobs.c.kind,
                jobs.c.model,
                jobs.c.started_at,
                jobs.c.finished_at,
                jobs.c.quote,
            )
        ).first()
        if ended is None:
            return False
        moves.job_ended(db, user_id=ended.user_id, job_id=job_id, kind=ended.kind, status=status, charged=0)
        voided = release_hold(db, ended.hold_id, key=f"compensate:{job_id}")
        if ended.api_key_id:
            return_daily_allowance(
                db, key_id=ended.api_key_id, amount=ended.cost_held, today=utc_day(ended.created_at)
            )
        balance = (voided and voided.balance) or ledger.balance(db, user_id=ended.user_id)
    meters.ended(
        kind=ended.kind, model=ended.model, status=status, charged=0, released=ended.cost_held,
        started_at=ended.started_at, finished_at=ended.finished_at,
    )
    meters.compensated(ended.kind, (ended.error or {}).get("code", status) if status == "failed" else status)
    event: dict[str, Any] = {"error": ended.error} if status == "failed" else {}
    progress.publish_job_event(
        services.redis,
        job_id,
        status,
        held=ended.cost_held,
        spent=0,
        status=status,
        receipt=receipts.settled(ended, voided, charged=0, released=ended.cost_held),
        owner_balance=(ended.user_id, balance_fields(balance)),
        **event,
    )
    dispatch.wake_after(services, job_id=job_id, user_id=ended.user_id, queue=ended.queue)
    return True
