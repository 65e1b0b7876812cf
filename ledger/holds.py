"""Two-phase spending: hold, then capture (remainder released), void or expiry, exactly once.

A hold's status is the compare-and-set that decides the race: the first UPDATE ... WHERE
status = 'pending' wins; every later attempt finds the hold resolved and gets a clear error,
or, with the winner's own idempotency key, the winner's result.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update

from ledger import canonical, chart, sql
from ledger.accounts import balance
from ledger.errors import (
    AccountNotFound,
    CaptureExceedsHold,
    HoldAlreadyResolved,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    LedgerError,
)
from ledger.models import Balance, Hold, Settlement
from ledger.posting import check_amount, entry_params, insert_entry, post
from ledger.tables import accounts, holds

_STATUS_OF_KIND = {"capture": "captured", "void": "voided", "expire": "expired"}


def _hold_from(row: Row[Any], entry_id: int | None = None) -> Hold:
    return Hold(
        row.id, row.account_id, row.amount, row.status, row.expires_at, row.reference,
        row.idempotency_key, entry_id, row.captured,
    )


def _replay_hold(session: sql.Executor, key: str, user_id: str, amount: int, reference: str | None) -> Hold:
    row = session.execute(
        select(holds, accounts.c.user_id)
        .join(accounts, accounts.c.id == holds.c.account_id)
        .where(holds.c.idempotency_key == key)
    ).one_or_none()
    if row is None:
        raise AccountNotFound(user_id)
    for field, first, again in (("user_id", row.user_id, user_id), ("amount", row.amount, amount),
                                ("reference", row.reference, reference)):
        if first != again:
            raise IdempotencyConflict(key, field)
    return _hold_from(row)


def hold(
    session: sql.Executor,
    *,
    user_id: str,
    amount: int,
    expires_at: datetime,
    reference: str | None,
    idempotency_key: str,
    now: datetime | None = None,
) -> Hold:
    """Reserve `amount` for a job; InsufficientCredits (changing nothing) if available < amount.

    The same key with the same user, amount and reference returns the first hold (expires_at
    is not compared: a retry naturally computes a later one).
    """
    amount = check_amount(amount)
    now = canonical.utc(now) if now else datetime.now(UTC)
    expires_at = canonical.utc(expires_at)
    hold_id = uuid.uuid4().hex
    params = entry_params(
        kind="hold", counterparty_id=chart.REVENUE, amount=amount, now=now, hold_id=hold_id,
        reference=reference, key=idempotency_key,
    )
    params.update(user_id=user_id, expires_at=expires_at, dp=0, dh=amount, dd=0, spend=0)
    entry_id: int | None
    connection = sql.connection(session)
    if connection.dialect.name == "postgresql":
        row = sql.pg_one(connection, sql.PG_HOLD, params)
        if row is None:
            return _replay_hold(session, idempotency_key, user_id, amount, reference)
        account_id, entry_id = row.account_id, row.entry_id
    else:
        claimed = session.execute(sql.HOLD_INSERT, params).one_or_none()
        if claimed is None:
            return _replay_hold(session, idempotency_key, user_id, amount, reference)
        account_id, entry_id = claimed.account_id, None
        params["account_id"] = account_id
        updated = session.execute(sql.ACCOUNT_UPDATE, params).one_or_none()
        if updated is not None:
            entry_id = insert_entry(session, updated, params, updated.id, chart.REVENUE)
    if entry_id is None:
        session.execute(sql.HOLD_DELETE, {"hold_id": hold_id})
        raise InsufficientCredits(balance(session, user_id=user_id).available, amount)
    return Hold(hold_id, account_id, amount, "pending", expires_at, reference, idempotency_key, entry_id)


def _already(session: sql.Executor, hold_id: str, kind: str, amount: int, key: str) -> Settlement:
    """Why a resolve found no pending hold: replay with the same key, or a clear refusal."""
    row = session.execute(select(holds).where(holds.c.id == hold_id)).one_or_none()
    if row is None:
        raise HoldNotFound(hold_id)
    if row.status == "pending":
        if kind == "capture" and amount > row.amount:
            raise CaptureExceedsHold(hold_id, row.amount, amount)
        raise LedgerError(f"hold {hold_id!r} could not be resolved; retry")
    if row.resolve_key != key:
        raise HoldAlreadyResolved(hold_id, row.status)
    if row.status != _STATUS_OF_KIND[kind]:
        raise IdempotencyConflict(key, "operation")
    if kind == "capture" and row.captured != amount:
        raise IdempotencyConflict(key, "amount")
    return Settlement(hold_id, row.status, row.captured, row.amount - row.captured, None)


def capture(
    session: sql.Executor, *, hold_id: str, amount: int, idempotency_key: str, now: datetime | None = None
) -> Settlement:
    """Charge `amount` (<= the hold) and release the rest, in the caller's transaction.

    A hold past its expiry that the reaper has not swept yet can still be captured: its status,
    not the clock, decides (the sweep and a late capture race through the same compare-and-set).
    """
    amount = check_amount(amount, allow_zero=True)
    now = canonical.utc(now) if now else datetime.now(UTC)
    params = entry_params(
        kind="capture", counterparty_id=chart.REVENUE, amount=amount, now=now, hold_id=hold_id,
        key=idempotency_key,
    )
    params.update(dp=-amount, dd=0, spend=amount)
    connection = sql.connection(session)
    if connection.dialect.name == "postgresql":
        row = sql.pg_one(connection, sql.PG_CAPTURE, params)
        if row is None:
            return _already(session, hold_id, "capture", amount, idempotency_key)
        balance = Balance(row.posted, row.held, row.posted - row.held)
        released = row.hold_amount - amount
        return Settlement(hold_id, "captured", amount, released, row.entry_id, balance, bytes(row.entry_hash))
    pending = session.execute(sql.HOLD_CAPTURE, params).one_or_none()
    if pending is None:
        return _already(session, hold_id, "capture", amount, idempotency_key)
    params.update(account_id=pending.account_id, dh=-pending.amount)
    updated = session.execute(sql.ACCOUNT_UPDATE, params).one()
    entry_id = insert_entry(session, updated, params, updated.id, chart.REVENUE)
    balance = Balance(updated.posted, updated.held, updated.posted - updated.held)
    return Settlement(hold_id, "captured", amount, pending.amount - amount, entry_id, balance, updated.head)


def _release(session: sql.Executor, hold_id: str, kind: str, key: str, now: datetime) -> Settlement:
    status = _STATUS_OF_KIND[kind]
    sql.dialect(session)
    pending = session.execute(
        sql.HOLD_RELEASE, {"status": status, "key": key, "now": now, "hold_id": hold_id}
    ).one_or_none()
    if pending is None:
        return _already(session, hold_id, kind, 0, key)
    posted = post(
        session, account_id=pending.account_id, kind=kind, counterparty_id=chart.REVENUE,
        amount=pending.amount, now=now, dh=-pending.amount, hold_id=hold_id, key=key,
    )
    assert posted is not None
    balance = Balance(posted.posted, posted.held, posted.posted - posted.held)
    return Settlement(hold_id, status, 0, pending.amount, posted.entry_id, balance, posted.hash)


def void(
    session: sql.Executor, *, hold_id: str, idempotency_key: str, now: datetime | None = None
) -> Settlement:
    """Release the whole hold (compensation); replays with the same key return the first result."""
    moment = canonical.utc(now) if now else datetime.now(UTC)
    return _release(session, hold_id, "void", idempotency_key, moment)


def due_holds(session: sql.Executor, *, now: datetime, limit: int = 500) -> list[tuple[str, int]]:
    """(hold id, account id) of pending holds past their expiry, oldest expiry first (no locks)."""
    rows = session.execute(
        select(holds.c.id, holds.c.account_id)
        .where(holds.c.status == "pending", holds.c.expires_at <= canonical.utc(now))
        .order_by(holds.c.expires_at)
        .limit(limit)
    ).all()
    return [(row.id, row.account_id) for row in rows]


def expire_hold(session: sql.Executor, *, hold_id: str, now: datetime) -> bool:
    """Release one hold past its expiry (compare-and-set on its status); False if it was resolved.

    The caller's transaction should have locked the hold's account first (the project's lock order)."""
    now = canonical.utc(now)
    sql.dialect(session)
    row = session.execute(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.status == "pending", holds.c.expires_at <= now)
        .values(status="expired", resolved_at=now, resolve_key=None)
        .returning(holds.c.account_id, holds.c.amount)
    ).first()
    if row is None:
        return False
    posted = post(
        session, account_id=row.account_id, kind="expire", counterparty_id=chart.REVENUE,
        amount=row.amount, now=now, dh=-row.amount, hold_id=hold_id, key=f"expire:{hold_id}",
    )
    assert posted is not None
    return True


def expire_holds(session: sql.Executor, *, now: datetime, limit: int = 500) -> int:
    """Release every pending hold past its expiry in the caller's transaction; returns how many."""
    due = sorted(due_holds(session, now=now, limit=limit), key=lambda item: (item[1], item[0]))
    return sum(expire_hold(session, hold_id=hold_id, now=now) for hold_id, _account in due)


def get_hold(session: sql.Executor, *, hold_id: str) -> Hold:
    """A hold by id; HoldNotFound if unknown."""
    row = session.execute(select(holds).where(holds.c.id == hold_id)).one_or_none()
    if row is None:
        raise HoldNotFound(hold_id)
    return _hold_from(row)
