"""While a dispute is open, the credits it disputes are held (Stripe's `charge.dispute.created`): they can't
be spent before the bank decides. The hold is released when the funds are withdrawn (the clawback then
takes them) or the dispute ends another way (reinstated, won, closed). Runs inside the caller's money unit,
after the user's account and the order are locked; keyed by the dispute, so a redelivery holds once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select

import ledger
from ledger.tables import holds

# Card networks give a dispute up to ~75 days to resolve; a forgotten hold expires by itself after this.
DISPUTE_HOLD_TTL = timedelta(days=120)


def hold_key(order: Row[Any], dispute: str) -> str:
    """The ledger key of a dispute's hold."""
    return f"{order.rail}:dispute:{dispute}:hold"


def hold_disputed(connection: Connection, order: Row[Any], dispute: str, credits: int, now: datetime) -> int:
    """Hold up to `credits` (what is still unspent of them) for an open dispute; answers what was held."""
    available = ledger.balance(connection, user_id=order.user_id).available
    amount = min(credits, available)
    if amount <= 0 or _pending(connection, hold_key(order, dispute)) is not None:
        return 0
    ledger.hold(
        connection,
        user_id=order.user_id,
        amount=amount,
        expires_at=now + DISPUTE_HOLD_TTL,
        reference=f"order:{order.id}",
        idempotency_key=hold_key(order, dispute),
        now=now,
    )
    return amount


def release(connection: Connection, order: Row[Any], dispute: str, now: datetime) -> int:
    """Release a dispute's hold if one is still pending; answers what was released."""
    found = _pending(connection, hold_key(order, dispute))
    if found is None:
        return 0
    ledger.void(connection, hold_id=found.id, idempotency_key=f"{hold_key(order, dispute)}:release", now=now)
    return int(found.amount)


def _pending(connection: Connection, key: str) -> Row[Any] | None:
    statement = select(holds).where(holds.c.idempotency_key == key, holds.c.status == "pending")
    return connection.execute(statement).first()
