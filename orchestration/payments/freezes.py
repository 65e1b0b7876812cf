"""Credits frozen while the bank or Stripe looks at a payment: a dispute's while it is open (Stripe's
`charge.dispute.created`; released when the funds are withdrawn, the clawback then taking them, or the
dispute ends another way), a purchase's unspent credits on an early fraud warning (released by a refund or
a withdrawal, or by an operator's decision). Runs inside the caller's money unit, after the user's account
and the order are locked; keyed by what froze them (`dispute:<id>`, `efw:<id>`): a redelivery freezes once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select

import ledger
from ledger.tables import holds

# Card networks give a dispute up to ~75 days to resolve; a forgotten freeze expires by itself after this.
DISPUTE_HOLD_TTL = timedelta(days=120)


def hold_key(order: Row[Any], name: str) -> str:
    """The ledger key of a freeze (`name`: `dispute:<id>`, `efw:<id>`)."""
    return f"{order.rail}:{name}:hold"


def freeze(connection: Connection, order: Row[Any], name: str, credits: int, now: datetime) -> int:
    """Hold up to `credits` (what is still unspent of them); answers what was held."""
    available = ledger.balance(connection, user_id=order.user_id).available
    amount = min(credits, available)
    if amount <= 0 or _pending(connection, hold_key(order, name)) is not None:
        return 0
    ledger.hold(
        connection,
        user_id=order.user_id,
        amount=amount,
        expires_at=now + DISPUTE_HOLD_TTL,
        reference=f"order:{order.id}",
        idempotency_key=hold_key(order, name),
        now=now,
    )
    return amount


def release(connection: Connection, order: Row[Any], name: str, now: datetime) -> int:
    """Release a freeze if it is still pending; answers what was released."""
    found = _pending(connection, hold_key(order, name))
    return _void(connection, found, now) if found is not None else 0


def release_all(connection: Connection, order: Row[Any], now: datetime, *, kind: str = "efw") -> int:
    """Release the order's freezes of one kind (`efw`, `dispute`): a refund or clawback takes them."""
    statement = select(holds).where(
        holds.c.reference == f"order:{order.id}",
        holds.c.status == "pending",
        holds.c.idempotency_key.like(f"{order.rail}:{kind}:%:hold"),
    )
    return sum(_void(connection, found, now) for found in connection.execute(statement))


def _void(connection: Connection, found: Row[Any], now: datetime) -> int:
    ledger.void(connection, hold_id=found.id, idempotency_key=f"{found.idempotency_key}:release", now=now)
    return int(found.amount)


def _pending(connection: Connection, key: str) -> Row[Any] | None:
    statement = select(holds).where(holds.c.idempotency_key == key, holds.c.status == "pending")
    return connection.execute(statement).first()
