"""Apply what a provider said to an order and the ledger, inside the caller's money unit.

The caller has locked the user's account, then the order (FOR UPDATE). Every ledger call carries a key
named after the provider's payment (never the event), so two events about one payment, or one event
delivered twice, move money once. A refund or clawback never fails: what the balance can't cover
becomes debt, repaid first by the next purchase.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

import ledger
from ledger.tables import operations
from orchestration import payment_freezes as freezes
from orchestration.payment_tables import orders
from payments.facts import PaymentFact

log = logging.getLogger(__name__)
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


def _set(connection: Connection, order: Row[Any], now: datetime, **values: Any) -> None:
    connection.execute(update(orders).where(orders.c.id == order.id).values(updated_at=now, **values))


def _after_take_back(order: Row[Any], refunded: int) -> str:
    return "refunded" if refunded else "credited"  # partly or fully: amount_refunded tells


def apply_fact(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """Apply one fact to a locked order; returns what changed."""
    handler = _HANDLERS.get(fact.kind)
    if handler is not None:
        return handler(connection, order, fact, now)
    if fact.kind in ("failed", "expired") and order.status in ("pending", "paid"):
        _set(connection, order, now, status=fact.kind, failure=(fact.detail or None) and fact.detail[:200])
        return Applied(fact.kind)
    return Applied(order.status, note="nothing to do", noop=True)


def _fraud_warning(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    if order.status not in TAKEN:
        return Applied(order.status, note="nothing credited to freeze", noop=True)
    unspent = credits_for(order, int(order.amount) - int(order.amount_refunded))
    held = freezes.freeze(connection, order, f"efw:{fact.key}", unspent, now)
    log.warning("order %s: early fraud warning %s (%s), %d frozen", order.id, fact.key, fact.detail, held)
    note = f"early fraud warning ({fact.detail}): review, refund or release"
    _set(connection, order, now, failure=note[:200])
    return Applied(order.status, note=f"{held} frozen on an early fraud warning", noop=not held)


def _dispute_won(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """PayPal: a dispute decided for us gives back what its reversal clawed back (under its own key)."""
    freezes.release(connection, order, f"dispute:{fact.key}", now)
    key = f"{order.rail}:dispute:{fact.key}:won"
    if order.status != "disputed" or _booked(connection, key):
        return Applied(order.status, note="nothing clawed back to give back", noop=True)
    given = min(credits_for(order, fact.amount), int(order.clawed_back))
    return _give_back(connection, order, given, key, now)


def _dispute_closed(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    released = freezes.release(connection, order, f"dispute:{fact.key}", now)
    return Applied(order.status, note=f"dispute closed, {released} released", noop=not released)


def _paid(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    if order.status not in CREDITABLE:
        return Applied(order.status, note="already settled", noop=True)
    for mine, theirs, what in (
        (order.provider_ref, fact.provider_ref, "provider"),
        (order.payment_ref, fact.payment_ref, "payment"),
    ):
        if mine and theirs and mine != theirs:
            log.error("order %s: %s id %s is not ours (%s)", order.id, what, theirs, mine)
            return Applied(order.status, note=f"{what} id mismatch", noop=True)
    if fact.amount != int(order.amount) or fact.currency.upper() != order.currency.upper():
        detail = f"paid {fact.amount} {fact.currency}, expected {order.amount} {order.currency}"
        log.error("order %s refused: %s", order.id, detail)
        _set(
            connection,
            order,
            now,
            status="failed",
            failure=f"{MISMATCH}: {detail}"[:200],
            amount_received=str(fact.amount),
            payment_ref=fact.payment_ref or order.payment_ref,  # what an admin refund sends back
        )
        return Applied("failed", note="amount mismatch")
    payment = fact.payment_ref or fact.provider_ref or order.id
    ledger.purchase(
        connection,
        user_id=order.user_id,
        amount=order.credits,
        rail=order.rail,
        reference=f"order:{order.id}",
        idempotency_key=f"{order.rail}:payment:{payment}",
        now=now,
    )
    refunded = int(order.amount_refunded)
    taken = 0
    if refunded:  # a refund reported before the payment: take it back at once
        taken = credits_for(order, refunded)
        ledger.refund(
            connection,
            user_id=order.user_id,
            amount=taken,
            rail=order.rail,
            reference=f"order:{order.id}",
            idempotency_key=f"{order.rail}:refund:{order.id}:upto:{refunded}",
            now=now,
        )
    _set(
        connection,
        order,
        now,
        status=_after_take_back(order, refunded),
        credited=order.credited + order.credits,
        clawed_back=order.clawed_back + taken,
        payment_ref=fact.payment_ref or order.payment_ref,
        provider_ref=order.provider_ref or fact.provider_ref,
        amount_received=str(fact.amount),
        customer_ref=fact.customer_ref or order.customer_ref,
        paid_at=now,
        credited_at=now,
    )
    return Applied(_after_take_back(order, refunded), order.credits - taken)


def _refunded(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    before = int(order.amount_refunded)
    paid = max(int(order.amount), int(order.amount_received))  # a mismatched payment is refunded whole
    total = min(fact.amount + (before if fact.detail == "increment" else 0), paid)
    if total <= before:
        return Applied(
            order.status, note="refund already applied", noop=True
        )  # a redelivery, or an older event
    if order.status not in TAKEN:
        # Not credited yet: remember the refund; crediting takes it back in the same transaction.
        _set(connection, order, now, amount_refunded=str(total))
        return Applied(order.status, note="refund before fulfilment")
    key = f"{order.rail}:refund:{fact.key or f'{order.id}:upto:{total}'}"
    if _booked(connection, key):
        return Applied(order.status, note="refund already applied", noop=True)  # told twice, two ways
    taken = credits_for(order, total) - credits_for(order, before)
    freezes.release_all(connection, order, now)  # the refund takes what the warning froze
    if taken:
        ledger.refund(
            connection,
            user_id=order.user_id,
            amount=taken,
            rail=order.rail,
            reference=f"order:{order.id}",
            idempotency_key=key,
            now=now,
        )
    status = "disputed" if order.status == "disputed" else "refunded"
    _set(
        connection,
        order,
        now,
        status=status,
        amount_refunded=str(total),
        clawed_back=order.clawed_back + taken,
    )
    return Applied(status, -taken)


def _refund_failed(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    key = f"{order.rail}:refund_failed:{fact.key}"
    before = int(order.amount_refunded)
    if _booked(connection, key):
        return Applied(order.status, note="refund failure already applied", noop=True)
    if before < fact.amount:
        raise NotYet(f"order {order.id}: refund {fact.key} failed before its refund was booked")
    after = before - fact.amount
    if order.status not in TAKEN:  # remembered, never taken back: forget it
        _set(connection, order, now, amount_refunded=str(after))
        return Applied(order.status, note="refund failed before fulfilment")
    given = credits_for(order, before) - credits_for(order, after)
    _set(connection, order, now, amount_refunded=str(after), failure=f"refund failed: {fact.detail}"[:200])
    return _give_back(connection, order, given, key, now, refunded=after)


def _withdrawn_key(order: Row[Any], fact: PaymentFact) -> str:
    return f"{order.rail}:dispute:{fact.key}:withdrawn"


def _booked(connection: Connection, key: str) -> bool:
    """Whether the ledger already made the operation with this key."""
    found = select(operations.c.idempotency_key).where(operations.c.idempotency_key == key)
    return connection.execute(found).first() is not None


def _dispute_opened(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    if order.status not in ("credited", "refunded") or _booked(connection, _withdrawn_key(order, fact)):
        return Applied(order.status, note="nothing credited to hold", noop=True)  # or clawed back already
    held = freezes.freeze(connection, order, f"dispute:{fact.key}", credits_for(order, fact.amount), now)
    return Applied(order.status, note=f"{held} held while the dispute is open", noop=not held)


def _dispute_withdrawn(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    freezes.release_all(connection, order, now, kind="dispute")  # the clawback takes them instead
    freezes.release_all(connection, order, now)
    if order.status not in TAKEN:
        _set(connection, order, now, status="disputed", failure="disputed before it was credited")
        return Applied("disputed", note="disputed before fulfilment")
    key = _withdrawn_key(order, fact)
    if _booked(connection, key):
        return Applied(order.status, note="dispute already withdrawn", noop=True)
    taken = credits_for(order, fact.amount)
    ledger.clawback(
        connection,
        user_id=order.user_id,
        amount=taken,
        rail=order.rail,
        reference=f"order:{order.id}",
        idempotency_key=key,
        now=now,
    )
    _set(connection, order, now, status="disputed", clawed_back=order.clawed_back + taken)
    return Applied("disputed", -taken)


def _dispute_reinstated(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    key = f"{order.rail}:dispute:{fact.key}:reinstated"
    freezes.release(connection, order, f"dispute:{fact.key}", now)
    if order.status not in TAKEN or _booked(connection, key):
        return Applied(order.status, note="nothing withdrawn to reinstate", noop=True)
    if not _booked(connection, _withdrawn_key(order, fact)):
        # Reinstated funds were withdrawn first, whatever order the events came in: book the withdrawal
        # now under its own key, so its late event finds it done and the won dispute ends credited.
        _dispute_withdrawn(connection, order, fact, now)
        order = connection.execute(select(orders).where(orders.c.id == order.id)).one()
    given = credits_for(order, fact.amount)
    return _give_back(connection, order, given, key, now)


def _give_back(
    connection: Connection,
    order: Row[Any],
    given: int,
    key: str,
    now: datetime,
    *,
    refunded: int | None = None,
) -> Applied:
    """Credit back what a dispute or a failed refund took, under the key that names it; `refunded` is the
    order's refunded total after it (as it stands when None)."""
    ledger.purchase(
        connection,
        user_id=order.user_id,
        amount=given,
        rail=order.rail,
        reference=f"order:{order.id}",
        idempotency_key=key,
        now=now,
    )
    status = _after_take_back(order, int(order.amount_refunded) if refunded is None else refunded)
    _set(connection, order, now, status=status, credited=order.credited + given)
    return Applied(status, given)


_HANDLERS: dict[str, Callable[[Connection, Row[Any], PaymentFact, datetime], Applied]] = {
    "paid": _paid,
    "refunded": _refunded,
    "refund_failed": _refund_failed,
    "dispute_opened": _dispute_opened,
    "dispute_withdrawn": _dispute_withdrawn,
    "dispute_reinstated": _dispute_reinstated,
    "dispute_closed": _dispute_closed,
    "dispute_won": _dispute_won,
    "fraud_warning": _fraud_warning,
}
