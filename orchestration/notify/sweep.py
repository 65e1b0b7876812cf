"""Beat's sweep of the outbox: re-sends the fan-out of notifications whose message was lost (a broker
refusal, a killed worker) and the attempts that are due (retries past their countdown, leases run out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from orchestration.notify.fanout import send_deliveries
from orchestration.notify.tables import deliveries, notifications
from orchestration.services import FAN_OUT_TASK, Services

# A notification this old and not fanned out lost its message: its own fan-out normally runs in
# milliseconds after the commit.
UNSENT_AFTER_S = 10
BATCH = 500
# A constant, not a bound parameter: PostgreSQL's generic plan could not use the partial index on it.
PENDING_SQL: ColumnElement[str] = literal_column("'pending'")


@dataclass(frozen=True)
class Swept:
    """What one sweep re-sent."""

    fan_outs: int
    deliveries: int


def sweep(services: Services, *, now: datetime | None = None) -> Swept:
    """Send again what is due; duplicates are harmless (fan-out and attempts are compare-and-sets)."""
    now = now or datetime.now(UTC)
    with services.uow(autocommit=True) as db:
        unsent = (
            db.execute(
                select(notifications.c.id)
                .where(
                    notifications.c.fanned_out_at.is_(None),
                    notifications.c.created_at < now - timedelta(seconds=UNSENT_AFTER_S),
                )
                .order_by(notifications.c.created_at)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
        due = (
            db.execute(
                select(deliveries.c.id)
                .where(deliveries.c.status == PENDING_SQL, deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
    if unsent:
        services.producer.send_task(FAN_OUT_TASK, args=[list(unsent)], ignore_result=True)
    send_deliveries(services, list(due))
    return Swept(len(unsent), len(due))
