"""Numbers operators watch: open jobs by status and queue, dead letters not yet replayed."""

from __future__ import annotations

from sqlalchemy import func, select

from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, dead_letters, jobs


def open_jobs(services: Services) -> dict[tuple[str, str], int]:
    """Count of queued and running jobs, by (status, queue)."""
    query = (
        select(jobs.c.status, jobs.c.queue, func.count())
        .where(jobs.c.status.in_([QUEUED_SQL, RUNNING_SQL]))
        .group_by(jobs.c.status, jobs.c.queue)
    )
    with services.uow(autocommit=True) as db:
        return {(status, queue): int(count) for status, queue, count in db.execute(query)}


def pending_dead_letters(services: Services) -> int:
    """Dead letters nobody replayed yet."""
    with services.uow(autocommit=True) as db:
        return int(
            db.execute(
                select(func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
            ).scalar_one()
        )
