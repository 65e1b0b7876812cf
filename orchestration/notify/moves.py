"""What money moves tell: a job's end and a payment's credit or refund become notifications when the user
subscribed to them (a bit the account lock read), and a payment is checked against the low-balance band."""

from __future__ import annotations

from sqlalchemy import Connection

from ledger.amounts import credits_text
from orchestration.notify import outbox, thresholds
from orchestration.notify.watch import subscribed


def job_ended(db: Connection, *, user_id: str, job_id: str, kind: str, status: str, charged: int) -> None:
    """In the transaction that ended the job: a `job.<status>` notification if a webhook waits for it."""
    event_type = f"job.{status}"
    if subscribed(db, event_type):
        data = {"job_id": job_id, "kind": kind, "status": status, "charged": credits_text(charged)}
        outbox.write(db, user_id=user_id, event_type=event_type, data=data)


def payment_applied(
    db: Connection, *, user_id: str, order_id: str, rail: str, status: str, credits: int
) -> None:
    """In the transaction that applied a payment fact: the low-balance check, `payment.*` if subscribed."""
    if credits == 0:
        return
    if credits > 0:
        thresholds.check_credit(db, user_id=user_id)
    else:
        thresholds.check_debit(db, user_id=user_id)
    event_type = "payment.succeeded" if credits > 0 else "payment.refunded"
    if subscribed(db, event_type):
        data = {"order_id": order_id, "rail": rail, "status": status, "credits": credits_text(abs(credits))}
        outbox.write(db, user_id=user_id, event_type=event_type, data=data)
