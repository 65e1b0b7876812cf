"""Promotional lots: granted with optional expiry, spent before paid credits, expired by a sweep.

Spending order: lowest `priority` first, then earliest expiry (no expiry last), then oldest.
The account row's `promo` is the authoritative promotional remainder and is lowered in the same
row update as each capture, so the hot path never touches lot rows. Lot rows learn what was spent
lazily: `_reconcile` allocates the difference in spending order before the set of lots changes
(grant, expiry), which is exact because the order only changes when the set does.

Expiry never drives `available` below zero: an expired lot leaves with at most the available
amount; the part a pending hold relies on stays until that hold resolves (a capture spends it
first, being the earliest expiry; after a void the next sweep expires it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update

from ledger import canonical, chart
from ledger.idempotency import claim, insert_returning, record
from ledger.models import Lot, Receipt
from ledger.posting import check_amount, lock_account, post
from ledger.sql import Executor
from ledger.tables import accounts, lots

_FAR = datetime.max.replace(tzinfo=UTC)


def _order(row: Row[Any]) -> tuple[int, datetime, int]:
    expires = canonical.utc(row.expires_at) if row.expires_at is not None else _FAR
    return (row.priority, expires, row.id)


def _open_lots(session: Executor, account_id: int) -> list[Row[Any]]:
    rows = session.execute(
        select(lots).where(lots.c.account_id == account_id, lots.c.remaining > 0)
    ).all()
    return sorted(rows, key=_order)


def _allocate(rows: list[Row[Any]], promo: int) -> list[tuple[Row[Any], int]]:
    """Each open lot with its remainder once spending beyond `promo` is charged in order."""
    unallocated = sum(row.remaining for row in rows) - promo
    result = []
    for row in rows:
        taken = min(row.remaining, max(unallocated, 0))
        unallocated -= taken
        result.append((row, row.remaining - taken))
    return result


def _reconcile(session: Executor, account_id: int, promo: int) -> list[tuple[Row[Any], int]]:
    """Write lazily spent amounts onto lot rows (account row must be locked)."""
    allocated = _allocate(_open_lots(session, account_id), promo)
    for row, remaining in allocated:
        if remaining != row.remaining:
            session.execute(update(lots).where(lots.c.id == row.id).values(remaining=remaining))
    return allocated


def grant(
    session: Executor,
    *,
    user_id: str,
    amount: int,
    reason: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int = 0,
    now: datetime | None = None,
) -> Receipt:
    """Grant promotional credits as a lot (optional expiry, priority: lower is spent first)."""
    amount = check_amount(amount)
    now = canonical.utc(now) if now else datetime.now(UTC)
    expires_at = canonical.utc(expires_at) if expires_at else None
    request = {
        "user_id": user_id, "amount": amount, "reason": reason, "priority": priority,
        "expires_at": canonical.micros(expires_at) if expires_at else None,
    }
    account = lock_account(session, user_id)
    replay = claim(session, key=idempotency_key, operation="grant", request=request, now=now)
    if replay is not None:
        return replay
    _reconcile(session, account.id, account.promo)
    lot_id = insert_returning(
        session,
        lots,
        {
            "account_id": account.id, "amount": amount, "remaining": amount, "priority": priority,
            "expires_at": expires_at, "reason": reason, "created_at": now,
        },
        lots.c.id,
    )
    posted = post(
        session, account_id=account.id, kind="grant", counterparty_id=chart.PROMOTIONS, amount=amount,
        now=now, dp=amount, spend=-amount, lot_id=lot_id, reference=reason, key=idempotency_key,
    )
    assert posted is not None
    receipt = Receipt("grant", idempotency_key, user_id, amount, (posted.entry_id,), lot_id=lot_id)
    return record(session, receipt)


def lots_of(session: Executor, *, user_id: str) -> list[Lot]:
    """The user's open promotional lots in spending order, with what is left of each."""
    row = session.execute(
        select(accounts.c.id, accounts.c.promo).where(accounts.c.user_id == user_id)
    ).one_or_none()
    if row is None:
        return []
    return [
        Lot(lot.id, lot.amount, remaining, lot.priority, lot.expires_at, lot.reason, lot.created_at)
        for lot, remaining in _allocate(_open_lots(session, row.id), row.promo)
        if remaining > 0
    ]


def accounts_with_expired_lots(session: Executor, *, now: datetime, limit: int = 500) -> list[int]:
    """Ids of accounts holding an expired lot with something left (no locks)."""
    return list(
        session.execute(
            select(lots.c.account_id)
            .distinct()
            .where(lots.c.remaining > 0, lots.c.expires_at <= canonical.utc(now))
            .order_by(lots.c.account_id)
            .limit(limit)
        ).scalars()
    )


def expire_lots_of(session: Executor, *, account_id: int, now: datetime) -> int:
    """Move what is left of one account's expired lots to the expiry account; returns the entries."""
    now = canonical.utc(now)
    account = lock_account(session, account_id=account_id)
    available = account.posted - account.held
    written = 0
    for lot, remaining in _reconcile(session, account.id, account.promo):
        if lot.expires_at is None or canonical.utc(lot.expires_at) > now or remaining == 0:
            continue
        expiring = min(remaining, available)
        if expiring <= 0:
            continue
        posted = post(
            session, account_id=account.id, kind="lot_expiry", counterparty_id=chart.EXPIRY,
            amount=expiring, now=now, dp=-expiring, spend=expiring, lot_id=lot.id,
            reference=lot.reason, key=f"lot-expiry:{lot.id}:{remaining}",
        )
        assert posted is not None
        session.execute(update(lots).where(lots.c.id == lot.id).values(remaining=remaining - expiring))
        available -= expiring
        written += 1
    return written


def expire_lots(session: Executor, *, now: datetime, limit: int = 500) -> int:
    """Expire every account's expired lots in the caller's transaction; returns the entries."""
    return sum(
        expire_lots_of(session, account_id=account_id, now=now)  # ascending ids: one lock order
        for account_id in accounts_with_expired_lots(session, now=now, limit=limit)
    )
