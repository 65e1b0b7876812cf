"""Idempotency of grants, purchases, refunds, clawbacks and adjustments (holds keep theirs inline)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger import sql
from ledger.errors import IdempotencyConflict
from ledger.models import Receipt
from ledger.sql import Executor
from ledger.tables import operations


def upsert_ignore(session: Executor, table: Any) -> Any:
    """An INSERT ... ON CONFLICT DO NOTHING for the session's dialect."""
    if sql.dialect(session) == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def claim(
    session: Executor, *, key: str, operation: str, request: dict[str, Any], now: datetime
) -> Receipt | None:
    """Claim `key` for this request; None if ours now, the first receipt if it was a replay.

    A racing claim of the same key waits on the first transaction's uncommitted row, then sees it.
    Raises IdempotencyConflict naming the first field that differs from the first request.
    """
    statement = upsert_ignore(session, operations).values(
        idempotency_key=key, operation=operation, request=json.dumps(request, sort_keys=True),
        created_at=now,
    )
    if session.execute(statement.returning(operations.c.idempotency_key)).first() is not None:
        return None
    row = session.execute(
        select(operations.c.operation, operations.c.request, operations.c.result).where(
            operations.c.idempotency_key == key
        )
    ).one()
    if row.operation != operation:
        raise IdempotencyConflict(key, "operation")
    first = json.loads(row.request)
    for field in sorted(set(first) | set(request)):
        if first.get(field) != request.get(field):
            raise IdempotencyConflict(key, field)
    stored = json.loads(row.result)
    stored["entry_ids"] = tuple(stored["entry_ids"])
    return Receipt(**stored)


def record(session: Executor, receipt: Receipt) -> Receipt:
    """Store the result of a claimed operation so replays return it."""
    session.execute(
        update(operations)
        .where(operations.c.idempotency_key == receipt.idempotency_key)
        .values(result=json.dumps(asdict(receipt), sort_keys=True))
    )
    return receipt


def release(session: Executor, key: str) -> None:
    """Give back a key claimed by an operation that then refused (so nothing is left behind)."""
    session.execute(delete(operations).where(operations.c.idempotency_key == key))


def insert_returning(session: Executor, table: Any, values: dict[str, Any], column: Any) -> Any:
    """Plain INSERT returning one column."""
    return session.execute(insert(table).values(**values).returning(column)).scalar_one()
