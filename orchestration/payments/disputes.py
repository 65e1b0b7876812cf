"""Disputes and fraud warnings applied to a locked order (inside the caller's money unit): a dispute's credits
frozen while it is open, clawed back when its funds are withdrawn, given back when it is reinstated or won;
a fraud warning freezes a purchase's unspent credits. Keyed by the dispute or warning: told twice, once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

import ledger
from orchestration.payments import freezes
from orchestration.payments.books import TAKEN, Applied, after_take_back, book, booked, credits_for, set_order
from orchestration.payments.tables import orders
from payments.facts import PaymentFact

log = logging.getLogger(__name__)


def fraud_warning(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """Freeze a purchase's unspent credits on an early fraud warning and mark the order for an operator."""
    if order.status not in TAKEN:
        return Applied(order.status, note="nothing credited to freeze", noop=True)
    unspent = credits_for(order, int(order.amount) - int(order.amount_refunded))
    held = freezes.freeze(connection, order, f"efw:{fact.key}", unspent, now)
    log.warning("order %s: early fraud warning %s (%s), %d frozen", order.id, fact.key, fact.detail, held)
    note = f"early fraud warning ({fact.detail}): review, refund or release"
    set_order(connection, order, now, failure=note[:200])
    return Applied(order.status, note=f"{held} frozen on an early fraud warning", noop=not held)


def dispute_won(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """PayPal: a dispute decided for us gives back what its reversal clawed back (under its own key)."""
    freezes.release(connection, order, f"dispute:{fact.key}", now)
    key = f"{order.rail}:dispute:{fact.key}:won"
    if order.status != "disputed" or booked(connection, key):
        return Applied(order.status, note="nothing clawed back to give back", noop=True)
    given = min(credits_for(order, fact.amount), int(order.clawed_back))
    return give_back(connection, order, given, key, now)


def dispute_closed(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """A dispute ended (any outcome): its freeze ends; money moves on its own events."""
    released = freezes.release(connection, order, f"dispute:{fact.key}", now)
    return Applied(order.status, note=f"dispute closed, {released} released", noop=not released)


def dispute_opened(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """A dispute opened: freeze its (unspent) credits while it is open."""
    if order.status not in ("credited", "refunded") or booked(connection, withdrawn_key(order, fact)):
        return Applied(order.status, note="nothing credited to hold", noop=True)  # or clawed back already
    held = freezes.freeze(connection, order, f"dispute:{fact.key}", credits_for(order, fact.amount), now)
    return Applied(order.status, note=f"{held} held while the dispute is open", noop=not held)


def withdrawn_key(order: Row[Any], fact: PaymentFact) -> str:
    """The ledger key of a dispute's withdrawal."""
    return f"{order.rail}:dispute:{fact.key}:withdrawn"


def dispute_withdrawn(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """The bank took the disputed funds: release the freezes, claw the credits back (once)."""
    freezes.release_all(connection, order, now, kind="dispute")  # the clawback takes them instead
    freezes.release_all(connection, order, now)
    if order.status not in TAKEN:
        set_order(connection, order, now, status="disputed", failure="disputed before it was credited")
        return Applied("disputed", note="disputed before fulfilment")
    key = withdrawn_key(order, fact)
    if booked(connection, key):
        return Applied(order.status, note="dispute already withdrawn", noop=True)
    taken = credits_for(order, fact.amount)
    book(ledger.clawback, connection, order, taken, key=key, now=now)
    set_order(connection, order, now, status="disputed", clawed_back=order.clawed_back + taken)
    return Applied("disputed", -taken)


def dispute_reinstated(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """The disputed funds came back: credit them again, booking the withdrawal first if it came late."""
    key = f"{order.rail}:dispute:{fact.key}:reinstated"
    freezes.release(connection, order, f"dispute:{fact.key}", now)
    if order.status not in TAKEN or booked(connection, key):
        return Applied(order.status, note="nothing withdrawn to reinstate", noop=True)
    if not booked(connection, withdrawn_key(order, fact)):
        # Reinstated funds were withdrawn first, whatever order the events came in: book the withdrawal
        # now under its own key, so its late event finds it done and the won dispute ends credited.
        dispute_withdrawn(connection, order, fact, now)
        order = connection.execute(select(orders).where(orders.c.id == order.id)).one()
    given = credits_for(order, fact.amount)
    return give_back(connection, order, given, key, now)


def give_back(
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
    book(ledger.purchase, connection, order, given, key=key, now=now)
    status = after_take_back(order, int(order.amount_refunded) if refunded is None else refunded)
    set_order(connection, order, now, status=status, credited=order.credited + given)
    return Applied(status, given)
