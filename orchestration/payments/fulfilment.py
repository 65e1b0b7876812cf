"""Apply what a provider said to an order and the ledger, inside the caller's money unit.

The caller has locked the user's account, then the order (FOR UPDATE). Every ledger call carries a key
named after the provider's payment (never the event), so two events about one payment, or one event
delivered twice, move money once. A refund or clawback never fails: what the balance can't cover
becomes debt, repaid first by the next purchase. Disputes and fraud warnings: payment_disputes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

import ledger
from orchestration.notify import moves
from orchestration.payments import disputes, freezes
from orchestration.payments.books import (
    CREDITABLE,
    MISMATCH,
    TAKEN,
    Applied,
    NotYet,
    after_take_back,
    book,
    booked,
    credits_for,
    refund_key,
    set_order,
)
from payments.facts import PaymentFact

log = logging.getLogger(__name__)


def apply_fact(connection: Connection, order: Row[Any], fact: PaymentFact, now: datetime) -> Applied:
    """Apply one fact to a locked order; returns what changed."""
    handler = _HANDLERS.get(fact.kind)
    if handler is not None:
        applied = handler(connection, order, fact, now)
        if not applied.noop:
            moves.payment_applied(
                connection, user_id=order.user_id, order_id=order.id, rail=order.rail, status=applied.status,
                credits=applied.credits,
            )
        return applied
    if fact.kind in ("failed", "expired") and order.status in ("pending", "paid"):
        failure = (fact.detail or None) and fact.detail[:200]
        set_order(connection, order, now, status=fact.kind, failure=failure)
        return Applied(fact.kind)
    return Applied(order.status, note="nothing to do", noop=True)


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
        set_order(
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
    book(ledger.purchase, connection, order, order.credits, key=f"{order.rail}:payment:{payment}", now=now)
    refunded = int(order.amount_refunded)
    taken = 0
    if refunded:  # a refund reported before the payment: take it back at once
        taken = credits_for(order, refunded)
        book(ledger.refund, connection, order, taken, key=refund_key(order, refunded), now=now)
    set_order(
        connection,
        order,
        now,
        status=after_take_back(order, refunded),
        credited=order.credited + order.credits,
        clawed_back=order.clawed_back + taken,
        payment_ref=fact.payment_ref or order.payment_ref,
        provider_ref=order.provider_ref or fact.provider_ref,
        amount_received=str(fact.amount),
        customer_ref=fact.customer_ref or order.customer_ref,
        paid_at=now,
        credited_at=now,
    )
    return Applied(after_take_back(order, refunded), order.credits - taken)


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
        set_order(connection, order, now, amount_refunded=str(total))
        return Applied(order.status, note="refund before fulfilment")
    key = f"{order.rail}:refund:{fact.key}" if fact.key else refund_key(order, total)
    if booked(connection, key):
        return Applied(order.status, note="refund already applied", noop=True)  # told twice, two ways
    taken = credits_for(order, total) - credits_for(order, before)
    freezes.release_all(connection, order, now)  # the refund takes what the warning froze
    if taken:
        book(ledger.refund, connection, order, taken, key=key, now=now)
    status = "disputed" if order.status == "disputed" else "refunded"
    set_order(
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
    if booked(connection, key):
        return Applied(order.status, note="refund failure already applied", noop=True)
    if before < fact.amount:
        raise NotYet(f"order {order.id}: refund {fact.key} failed before its refund was booked")
    after = before - fact.amount
    if order.status not in TAKEN:  # remembered, never taken back: forget it
        set_order(connection, order, now, amount_refunded=str(after))
        return Applied(order.status, note="refund failed before fulfilment")
    given = credits_for(order, before) - credits_for(order, after)
    failure = f"refund failed: {fact.detail}"[:200]
    set_order(connection, order, now, amount_refunded=str(after), failure=failure)
    return disputes.give_back(connection, order, given, key, now, refunded=after)


_HANDLERS: dict[str, Callable[[Connection, Row[Any], PaymentFact, datetime], Applied]] = {
    "paid": _paid,
    "refunded": _refunded,
    "refund_failed": _refund_failed,
    "dispute_opened": disputes.dispute_opened,
    "dispute_withdrawn": disputes.dispute_withdrawn,
    "dispute_reinstated": disputes.dispute_reinstated,
    "dispute_closed": disputes.dispute_closed,
    "dispute_won": disputes.dispute_won,
    "fraud_warning": disputes.fraud_warning,
}
