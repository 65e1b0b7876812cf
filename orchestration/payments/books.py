"""The bookkeeping shared by the fulfilment of payments and of disputes: what applying a fact did, the
credits an amount is worth, an order's row update, a ledger movement for an order, whether the ledger
already booked a key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from ledger.tables import operations
from orchestration.payments.tables import orders

CREDITABLE = frozenset({"pending", "paid", "expired"})
MISMATCH = "amount mismatch"  # the failure of an order paid with another amount or currency
TAKEN = frozenset({"credited", "refunded", "disputed"})


class NotYet(RuntimeError):
    """A fact about money not booked yet (a refund's failure before the refund): applied on a later try."""


@dataclass(frozen=True)
class Applied:
    """What applying one fact did: the order's status after it and the credits it moved (signed)."""

    status: str
    credits: int = 0
    note: str = ""
    noop: bool = False  # a replay or a report of what was already applied


def credits_for(order: Row[Any], amount: int) -> int:
    """The credits that `amount` (provider units) of the order's price is worth, rounded down."""
    return int(order.credits) * min(amount, int(order.amount)) // int(order.amount)


def set_order(connection: Connection, order: Row[Any], now: datetime, **values: Any) -> None:
    """Update the order's row (and its updated_at)."""
    connection.execute(update(orders).where(orders.c.id == order.id).values(updated_at=now, **values))


def book(
    move: Callable[..., object],
    connection: Connection,
    order: Row[Any],
    amount: int,
    *,
    key: str,
    now: datetime,
) -> None:
    """Move `amount` credits for the order on its user's account and rail (`move`: ledger.purchase, refund
    or clawback), under the ledger key `key`; the entries' reference names the order."""
    move(
        connection,
        user_id=order.user_id,
        amount=amount,
        rail=order.rail,
        reference=f"order:{order.id}",
        idempotency_key=key,
        now=now,
    )


def refund_key(order: Row[Any], total: int) -> str:
    """The ledger key of taking back what the order's refunds add up to at `total` (provider units)."""
    return f"{order.rail}:refund:{order.id}:upto:{total}"


def after_take_back(order: Row[Any], refunded: int) -> str:
    """An order's status once credited, given what of it is refunded."""
    return "refunded" if refunded else "credited"  # partly or fully: amount_refunded tells


def booked(connection: Connection, key: str) -> bool:
    """Whether the ledger already made the operation with this key."""
    found = select(operations.c.idempotency_key).where(operations.c.idempotency_key == key)
    return connection.execute(found).first() is not None
