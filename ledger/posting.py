"""The one primitive that moves money: a conditional account-row update plus its chained entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from ledger import canonical, chart, sql
from ledger.errors import AccountNotFound, InvalidAmount
from ledger.tables import accounts


@dataclass(frozen=True)
class Posted:
    """What one posting wrote: the entry id and the account's balances after it."""

    entry_id: int
    seq: int
    posted: int
    held: int
    debt: int
    hash: bytes | None = None  # the entry's chain hash (a receipt shows it)


def check_amount(amount: object, *, allow_zero: bool = False) -> int:
    """The amount as an int of micro-credits, refusing floats, bools and non-positive values."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"amounts are ints of micro-credits, got {type(amount).__name__}")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount(f"amount must be {'>= 0' if allow_zero else '> 0'}, got {amount}")
    if amount >= 2**62:
        raise InvalidAmount("amount out of range")
    return amount


def entry_params(
    *,
    kind: str,
    counterparty_id: int,
    amount: int,
    now: datetime,
    hold_id: str | None = None,
    lot_id: int | None = None,
    reference: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Bind parameters shared by every entry insert, including the body digest."""
    now = canonical.utc(now)
    body = canonical.entry_body(
        kind, counterparty_id, amount, hold_id, lot_id, reference, key, canonical.micros(now)
    )
    return {
        "kind": kind, "amount": amount, "hold_id": hold_id, "lot_id": lot_id, "reference": reference,
        "key": key, "now": now, "body": body, "credit": counterparty_id,
    }


def insert_entry(
    session: sql.Executor, row: Row[Any], params: dict[str, Any], debit: int, credit: int
) -> int:
    """Insert the entry for an account row just updated (SQLite path); returns its id."""
    values = {
        **params, "account_id": row.id, "seq": row.seq, "debit": debit, "credit": credit,
        "posted": row.posted, "held": row.held, "debt": row.debt, "hash": row.head,
    }
    return int(session.execute(sql.ENTRY_INSERT, values).scalar_one())


def post(
    session: sql.Executor,
    *,
    account_id: int,
    kind: str,
    counterparty_id: int,
    amount: int,
    now: datetime,
    dp: int = 0,
    dh: int = 0,
    dd: int = 0,
    spend: int = 0,
    hold_id: str | None = None,
    lot_id: int | None = None,
    reference: str | None = None,
    key: str | None = None,
) -> Posted | None:
    """Apply balance deltas to a user account and append the chained entry; None if available < 0."""
    params = entry_params(
        kind=kind, counterparty_id=counterparty_id, amount=amount, now=now, hold_id=hold_id,
        lot_id=lot_id, reference=reference, key=key,
    )
    debit, credit = chart.legs(kind, account_id, counterparty_id)
    params.update(account_id=account_id, dp=dp, dh=dh, dd=dd, spend=spend, debit=debit, credit=credit)
    connection = sql.connection(session)
    if connection.dialect.name == "postgresql":
        found = sql.pg_one(connection, sql.PG_POST, params)
        if found is None:
            return None
        return Posted(found.id, found.seq, found.posted_after, found.held_after, found.debt_after, found.hash)
    row = session.execute(sql.ACCOUNT_UPDATE, params).one_or_none()
    if row is None:
        return None
    entry_id = insert_entry(session, row, params, debit, credit)
    return Posted(entry_id, row.seq, row.posted, row.held, row.debt, row.head)


def lock_account(
    session: sql.Executor, user_id: str | None = None, *, account_id: int | None = None
) -> Row[Any]:
    """The user's account row, locked until the transaction ends (SQLite: BEGIN IMMEDIATE did it)."""
    sql.dialect(session)
    where = accounts.c.user_id == user_id if account_id is None else accounts.c.id == account_id
    row = session.execute(
        select(
            accounts.c.id, accounts.c.user_id, accounts.c.posted, accounts.c.held, accounts.c.debt,
            accounts.c.promo, accounts.c.seq,
        )
        .where(where, accounts.c.kind == "user")
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise AccountNotFound(str(user_id if account_id is None else account_id))
    return row  # type: ignore[return-value]
