"""Usage and revenue reports, summed from ledger entries so they always agree with the ledger.

Usage is the `capture` entries (what jobs were charged; the revenue account's balance is their sum),
joined to their job by hold id for the model, kind and API key. Revenue is what the payment rails
brought in (`purchase`, `debt_repayment`) and what they took back (`refund`, `clawback`, `debt`), each
keyed by its rail account. Every figure is an integer of micro-credits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from ledger import chart
from ledger.tables import accounts, entries
from orchestration.tables import jobs

USAGE_GROUPS = ("day", "model", "kind", "user", "api_key")
REVENUE_GROUPS = ("day", "rail")
BROUGHT_IN = ("purchase", "debt_repayment")
TAKEN_BACK = ("refund", "clawback", "debt")
_RAIL_NAMES = {chart.SYSTEM_ACCOUNTS[rail]: rail for rail in chart.RAILS}


class ReportError(ValueError):
    """A report was asked for with groups or a period it cannot have; the message is safe to show."""


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC."""

    start: datetime
    end: datetime


def _day(db: Connection) -> ColumnElement[Any]:
    if db.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", entries.c.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", entries.c.created_at)


def _check(group_by: Sequence[str], allowed: Sequence[str], period: Period) -> list[str]:
    unknown = [name for name in group_by if name not in allowed]
    if unknown:
        raise ReportError(f"group_by takes names among {', '.join(allowed)}")
    if period.start >= period.end:
        raise ReportError("`from` must be before `to`")
    return list(dict.fromkeys(group_by))  # a name given twice groups once


def usage(db: Connection, *, period: Period, group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Credits charged to jobs in the period, with entry counts, grouped by the given dimensions."""
    group_by = _check(group_by, USAGE_GROUPS, period)
    columns = {
        "day": _day(db),
        "model": jobs.c.model,
        "kind": jobs.c.kind,
        "user": accounts.c.user_id,
        "api_key": jobs.c.api_key_id,
    }
    keys = [columns[name].label(name) for name in group_by]
    query = (
        select(
            *keys,
            func.count().label("entries"),
            func.coalesce(func.sum(entries.c.amount), 0).label("charged"),
        )
        .select_from(entries)
        .join(accounts, accounts.c.id == entries.c.account_id)
        # One hash join over jobs per report (no index on hold_id: it would cost every job insert).
        .outerjoin(jobs, jobs.c.hold_id == entries.c.hold_id)
        .where(
            entries.c.kind == "capture",
            entries.c.created_at >= period.start,
            entries.c.created_at < period.end,
        )
    )
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    return [
        {
            **{name: getattr(row, name) for name in group_by},
            "entries": int(row.entries),
            "charged": int(row.charged),
        }
        for row in db.execute(query)
        if row.entries
    ]


def revenue(db: Connection, *, period: Period, group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Credits the payment rails brought in and took back in the period, and the net, grouped."""
    group_by = _check(group_by, REVENUE_GROUPS, period)
    rail_id = case(
        (entries.c.kind.in_(BROUGHT_IN), entries.c.debit_account_id), else_=entries.c.credit_account_id
    )
    columns: dict[str, ColumnElement[Any]] = {"day": _day(db), "rail": rail_id}
    keys = [columns[name].label(name) for name in group_by]
    signed_in = case((entries.c.kind.in_(BROUGHT_IN), entries.c.amount), else_=literal(0))
    signed_out = case((entries.c.kind.in_(TAKEN_BACK), entries.c.amount), else_=literal(0))
    query = select(
        *keys, func.sum(signed_in).label("brought_in"), func.sum(signed_out).label("taken_back")
    ).where(
        entries.c.kind.in_(BROUGHT_IN + TAKEN_BACK),
        rail_id.in_(sorted(_RAIL_NAMES)),
        entries.c.created_at >= period.start,
        entries.c.created_at < period.end,
    )
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    rows = []
    for row in db.execute(query):
        if row.brought_in is None:
            continue
        brought_in, taken_back = int(row.brought_in), int(row.taken_back)
        item = {name: getattr(row, name) for name in group_by}
        if "rail" in item:
            item["rail"] = _RAIL_NAMES[int(item["rail"])]
        rows.append(
            {**item, "brought_in": brought_in, "taken_back": taken_back, "net": brought_in - taken_back}
        )
    return rows
