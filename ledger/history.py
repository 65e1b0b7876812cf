"""A user's transaction history, newest first, with hashes and whether each entry is sealed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ledger import canonical, chart
from ledger.errors import AccountNotFound, LedgerError
from ledger.sql import Executor
from ledger.tables import accounts, checkpoint_leaves, checkpoints, entries, holds

MAX_LIMIT = 200
RESOLVING_KINDS = ("capture", "void", "expire")


class InvalidCursor(LedgerError):
    """The cursor was not one this function returned."""

    code = "invalid_cursor"


def _signed(kind: str, amount: int, hold_amount: int | None) -> tuple[int, int]:
    """(change of posted, change of held) an entry made to the user's balance."""
    if kind in chart.CREDIT_KINDS:
        return amount, 0
    if kind == "capture":
        return -amount, -(hold_amount or 0)
    if kind in chart.DEBIT_KINDS:
        return -amount, 0
    if kind == "hold":
        return 0, amount
    if kind in chart.PENDING_KINDS:
        return 0, -amount
    return 0, 0


def transactions(
    session: Executor, *, user_id: str, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """`{items, next_cursor}`: entries newest first; `amount` is the signed change of posted credits."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    account_id = session.execute(
        select(accounts.c.id).where(accounts.c.user_id == user_id)
    ).scalar_one_or_none()
    if account_id is None:
        raise AccountNotFound(user_id)
    query = (
        select(entries, holds.c.amount.label("hold_amount"), holds.c.reference.label("hold_reference"),
               checkpoint_leaves.c.checkpoint_id)
        .select_from(
            entries.outerjoin(holds, holds.c.id == entries.c.hold_id).outerjoin(
                checkpoint_leaves, checkpoint_leaves.c.entry_id == entries.c.id
            )
        )
        .where(entries.c.account_id == account_id)
        .order_by(entries.c.seq.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidCursor(f"invalid cursor {cursor!r}")
        query = query.where(entries.c.seq < int(cursor))
    rows = session.execute(query).all()
    items = []
    for row in rows[:limit]:
        amount, held = _signed(row.kind, row.amount, row.hold_amount)
        items.append({
            "id": row.id, "kind": row.kind, "amount": amount, "held": held,
            "balance_after": row.posted_after, "available_after": row.posted_after - row.held_after,
            "job_id": row.hold_reference if row.hold_id else None,
            "reference": row.reference, "hold_id": row.hold_id,
            "created_at": canonical.utc(row.created_at), "hash": row.hash.hex(),
            "sealed": row.checkpoint_id is not None,
        })
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def resolution(session: Executor, *, user_id: str, hold_id: str) -> dict[str, Any] | None:
    """The entry that resolved a user's hold (capture, void or expiry) and its checkpoint number once sealed.

    Keyed by the account first: (account_id, seq) is indexed and the entry is among its latest."""
    account_id = select(accounts.c.id).where(accounts.c.user_id == user_id).scalar_subquery()
    row = session.execute(
        select(entries.c.id, entries.c.hash, checkpoints.c.number)
        .select_from(
            entries.outerjoin(checkpoint_leaves, checkpoint_leaves.c.entry_id == entries.c.id).outerjoin(
                checkpoints, checkpoints.c.id == checkpoint_leaves.c.checkpoint_id
            )
        )
        .where(
            entries.c.account_id == account_id,
            entries.c.hold_id == hold_id,
            entries.c.kind.in_(RESOLVING_KINDS),
        )
        .order_by(entries.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"entry_id": row.id, "entry_hash": bytes(row.hash), "sealed_in": row.number}
