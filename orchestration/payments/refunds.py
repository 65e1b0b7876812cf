"""Admin refunds, per rail: Stripe and PayPal refund at the provider (the credits come back through the
same event path as a refund made on their dashboards); crypto is refunded by hand from the HD wallet,
so its refund books the ledger side alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

import ledger
from orchestration.errors import PaymentRefused
from orchestration.jobs import balances
from orchestration.payments import freezes, notices, paypal, stripe
from orchestration.payments.books import MISMATCH, TAKEN, Applied, book, credits_for, refund_key, set_order
from orchestration.payments.orders import get_order
from orchestration.payments.units import money_unit, plain_unit
from orchestration.services import Services


def refund_order(
    services: Services,
    *,
    order_id: str,
    amount: int | None,
    admin_id: str,
    request_key: str | None = None,
    reason: str = "requested_by_customer",
) -> Row[Any]:
    """Refund `amount` (minor units; None: all that is left) of a credited order; answers the order.

    `request_key` (the admin's Idempotency-Key) names the refund at the provider, so a retry after a
    timeout refunds once even if the provider's webhook moved the order's refunded total meanwhile."""
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None:
        raise PaymentRefused("No such order.", kind="not-found", status=404)
    if order.status == "failed" and (order.failure or "").startswith(MISMATCH):
        _refund_mismatch(services, order, amount, request_key=request_key, reason=reason)
        return _reread(services, order_id)
    left = int(order.amount) - int(order.amount_refunded)
    amount = left if amount is None else amount
    if order.status not in TAKEN or left <= 0:
        raise PaymentRefused(
            f"The order is {order.status} with {left} left to refund.", kind="not-refundable", status=409
        )
    if amount > left:
        raise PaymentRefused(f"At most {left} {order.currency} is left to refund.", kind="refund-too-large")
    if order.rail == "stripe":
        stripe.refund(services, order, amount, request_key=request_key, reason=reason)
    elif order.rail == "paypal":
        paypal.refund(services, order, amount, request_key=request_key, reason=reason)
    else:
        _book_crypto_refund(services, order, amount, admin_id)
    return _reread(services, order_id)


def _reread(services: Services, order_id: str) -> Row[Any]:
    with plain_unit(services) as connection:
        found = get_order(connection, order_id)
    assert found is not None
    return found


def _refund_mismatch(
    services: Services, order: Row[Any], amount: int | None, *, request_key: str | None, reason: str
) -> None:
    """Send back a payment we refused (another amount or currency than the order's): it credited nothing,
    so only the provider moves money. The whole payment, in the currency it was made in (Stripe)."""
    left = int(order.amount_received) - int(order.amount_refunded)
    if order.rail != "stripe" or not order.payment_ref or left <= 0:
        raise PaymentRefused(
            "Only a refused Stripe payment not yet refunded is sent back here; others at the provider.",
            kind="not-refundable",
            status=409,
        )
    if amount not in (None, left):
        raise PaymentRefused(f"A refused payment is refunded whole: {left}.", kind="refund-whole-payment")
    stripe.refund(services, order, left, request_key=request_key, reason=reason)


def _book_crypto_refund(services: Services, order: Row[Any], amount: int, admin_id: str) -> None:
    now = datetime.now(UTC)
    with money_unit(services, order.user_id) as connection:
        locked = get_order(connection, order.id, lock=True)
        assert locked is not None
        left = int(locked.amount) - int(locked.amount_refunded)
        if amount > left:  # another admin refunded meanwhile: the check before the lock was stale
            raise PaymentRefused(
                f"At most {left} {locked.currency} is left to refund.", kind="refund-too-large"
            )
        total = int(locked.amount_refunded) + amount
        taken = credits_for(locked, total) - credits_for(locked, int(locked.amount_refunded))
        if taken:  # keyed by the refunded total, like every rail's refund
            book(ledger.refund, connection, locked, taken, key=refund_key(locked, total), now=now)
        set_order(
            connection,
            locked,
            now,
            status="refunded",
            amount_refunded=str(total),
            clawed_back=locked.clawed_back + taken,
            failure=f"refunded by {admin_id}"[:200],
        )
    notices.after_commit(services, order.user_id, [order.id], [Applied("refunded", -taken)])


def release_freezes(services: Services, *, order_id: str, admin_id: str) -> Row[Any]:
    """An operator reviewed an early fraud warning and trusts the payment: its frozen credits are freed."""
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None:
        raise PaymentRefused("No such order.", kind="not-found", status=404)
    now = datetime.now(UTC)
    with money_unit(services, order.user_id) as connection:
        locked = get_order(connection, order.id, lock=True)
        assert locked is not None
        released = freezes.release_all(connection, locked, now)
        if not released:
            raise PaymentRefused("Nothing of this order is frozen.", kind="nothing-frozen", status=409)
        set_order(connection, locked, now, failure=f"fraud warning reviewed by {admin_id}: released"[:200])
    balances.notify_balance(services, order.user_id)
    return _reread(services, order_id)
