"""The personal spending limit: at most N credits of holds per UTC day or month, a preference the user sets.

The limit lives in its own row (`spending_limits`), read by the money unit's account lock in the same round
trip (orchestration/uow.py), so a hold of a user without a limit pays a compare. With one, the hold's unit
sums what the period's jobs took (charged when ended, held while open) and refuses the job before its hold
is placed: the account lock makes that sum and the hold one step, so concurrent jobs cannot overshoot it.
What counts is jobs' money (chat, agents, images, vision, completions); a search's embedding hold is not a
job and is not counted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, String, Table, case, delete, func, select

from orchestration.tables import FINAL_STATUSES, jobs
from runtime.db import Base, Timestamp

PERIODS = ("day", "month")
_LIMIT = "creditflow.spending_limit"

spending_limits = Table(
    "spending_limits",
    Base.metadata,
    Column("user_id", String(100), primary_key=True),
    Column("credits", BigInteger, nullable=False),  # micro-credits per period
    Column("period", String(5), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)


@dataclass(frozen=True)
class Limit:
    """A user's limit: `credits` (micro) per `period` ("day" or "month", UTC)."""

    credits: int
    period: str


class SpendingLimitExceeded(Exception):
    """The job's hold would take the user past their own spending limit for the period."""

    def __init__(self, *, limit: Limit, spent: int, required: int) -> None:
        super().__init__(f"your spending limit of the {limit.period} can't cover this job")
        self.limit = limit
        self.spent = spent
        self.required = required


def remember_limit(connection: Connection, row: Any) -> None:
    """Keep the limit the account lock read (columns limit_credits, limit_period; or None) for this unit."""
    credits = getattr(row, "limit_credits", None) if row is not None else None
    if credits is None:
        connection.info.pop(_LIMIT, None)
    else:
        connection.info[_LIMIT] = Limit(int(credits), str(row.limit_period))


def period_start(period: str, now: datetime) -> datetime:
    """The UTC start of the day or month holding `now`."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if period == "month" else day


def spent_since(db: Connection, *, user_id: str, since: datetime) -> int:
    """What the user's jobs created since `since` took: charged once ended, held while still open."""
    taken = case(
        (jobs.c.status.in_(sorted(FINAL_STATUSES)), func.coalesce(jobs.c.cost_charged, 0)),
        else_=jobs.c.cost_held,
    )
    found = db.execute(
        select(func.coalesce(func.sum(taken), 0)).where(jobs.c.user_id == user_id, jobs.c.created_at >= since)
    ).scalar_one()
    return int(found)


def check_spending(db: Connection, *, user_id: str, amount: int, now: datetime) -> None:
    """In the hold's money unit, before the hold: SpendingLimitExceeded if `amount` would pass the limit."""
    limit = db.info.get(_LIMIT)
    if not isinstance(limit, Limit):
        return  # no limit: the common case costs this compare
    spent = spent_since(db, user_id=user_id, since=period_start(limit.period, now))
    if spent + amount > limit.credits:
        raise SpendingLimitExceeded(limit=limit, spent=spent, required=amount)


def set_limit(db: Connection, *, user_id: str, credits: int | None, period: str, now: datetime) -> None:
    """Set (or with `credits` None, remove) the user's limit; call it in their money unit."""
    if period not in PERIODS:
        raise ValueError(f"spending_limit_period must be one of {', '.join(PERIODS)}")
    db.execute(delete(spending_limits).where(spending_limits.c.user_id == user_id))
    if credits is not None:
        db.execute(
            spending_limits.insert().values(user_id=user_id, credits=credits, period=period, updated_at=now)
        )
