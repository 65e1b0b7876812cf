"""Numbers operators watch: open jobs by status, queue and kind, dead letters not yet replayed, credits on
hold and holds the reaper should have released (each one indexed query per scrape, none per job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ledger.tables import holds
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, dead_letters, jobs


def open_jobs(services: Services) -> dict[tuple[str, str, str], int]:
    """Count of queued and running jobs, by (status, queue, kind)."""
    query = (
        select(jobs.c.status, jobs.c.queue, jobs.c.kind, func.count())
        .where(jobs.c.status.in_([QUEUED_SQL, RUNNING_SQL]))
        .group_by(jobs.c.status, jobs.c.queue, jobs.c.kind)
    )
    with services.uow(autocommit=True) as db:
        return {(status, queue, kind): int(count) for status, queue, kind, count in db.execute(query)}


# A pending hold this long past its expiry is one the reaper missed (it sweeps every few seconds).
STRANDED_AFTER = timedelta(minutes=5)


def holds_pending(services: Services, *, now: datetime | None = None) -> tuple[int, int, int]:
    """(micro-credits on hold, pending holds, stranded holds: pending past expiry + STRANDED_AFTER)."""
    stranded_before = (now or datetime.now(UTC)) - STRANDED_AFTER
    query = select(
        func.coalesce(func.sum(holds.c.amount), 0),
        func.count(),
        func.count().filter(holds.c.expires_at < stranded_before),
    ).where(holds.c.status == "pending")
    with services.uow(autocommit=True) as db:
        amount, count, stranded = db.execute(query).one()
    return int(amount), int(count), int(stranded)


def pending_dead_letters(services: Services) -> int:
    """Dead letters nobody replayed yet."""
    with services.uow(autocommit=True) as db:
        return int(
            db.execute(
                select(func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
            ).scalar_one()
        )
