"""PayPal webhooks and Orders v2 answers as PaymentFacts. A capture `COMPLETED` credits (from the capture
answer or `PAYMENT.CAPTURE.COMPLETED`, keyed by the PayPal order, so once); `PENDING` waits; `DENIED`
fails; `REFUNDED` and `REVERSED` take credits back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from payments.facts import FactKind, PaymentFact
from payments.paypal_gateway import to_minor
from runtime.packs import ZERO_DECIMAL

HANDLED = frozenset(
    {
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.DENIED",
        "PAYMENT.CAPTURE.DECLINED",
        "PAYMENT.CAPTURE.REFUNDED",
        "PAYMENT.CAPTURE.REVERSED",
        "CHECKOUT.ORDER.APPROVED",  # no fact by itself: the buyer approved, so we capture at once
        "CUSTOMER.DISPUTE.CREATED",
        "CUSTOMER.DISPUTE.UPDATED",
        "CUSTOMER.DISPUTE.RESOLVED",
    }
)
LOOKUP_ORDER = "lookup.order"  # an Orders v2 answer we fetched (a capture result, the reconciler's GET)


def _minor(money: dict[str, Any] | None) -> tuple[int, str]:
    if not money:
        return 0, ""
    currency = str(money.get("currency_code") or "").upper()
    return to_minor(str(money.get("value") or "0"), 0 if currency in ZERO_DECIMAL else 2), currency


def _capture_fact(capture: dict[str, Any], *, paypal_order: str | None, order_id: str | None) -> PaymentFact:
    amount, currency = _minor(capture.get("amount"))
    related = ((capture.get("supplementary_data") or {}).get("related_ids") or {}).get("order_id")
    status = str(capture.get("status"))
    base = PaymentFact(
        "pending",
        capture.get("custom_id") or order_id,
        provider_ref=paypal_order or related,
        payment_ref=capture.get("id"),
        amount=amount,
        currency=currency,
        detail=f"capture {status.lower()}",
    )
    if status in ("COMPLETED", "REFUNDED", "PARTIALLY_REFUNDED"):
        return replace(
            base, kind="paid", detail=""
        )  # a refunded capture was paid first; refunds take it back
    if status in ("DECLINED", "DENIED", "FAILED"):
        return replace(base, kind="failed")
    return base


def order_facts(order: dict[str, Any]) -> list[PaymentFact]:
    """An Orders v2 order (capture answer or GET): its capture's fact, or nothing while uncaptured."""
    units = order.get("purchase_units") or [{}]
    unit = units[0]
    captures = (unit.get("payments") or {}).get("captures") or []
    if not captures:
        if order.get("status") == "VOIDED":
            return [
                PaymentFact("failed", unit.get("reference_id"), provider_ref=order.get("id"), detail="voided")
            ]
        return []
    fact = _capture_fact(captures[0], paypal_order=order.get("id"), order_id=unit.get("reference_id"))
    return [] if fact.kind == "pending" else [fact]


def _refund_fact(kind: FactKind, refund: dict[str, Any]) -> PaymentFact:
    capture_id = next(
        (
            link["href"].rstrip("/").rsplit("/", 1)[-1]
            for link in refund.get("links") or []
            if link.get("rel") == "up"
        ),
        None,
    )
    amount, currency = _minor(refund.get("amount"))
    total = (refund.get("seller_payable_breakdown") or {}).get("total_refunded_amount")
    detail = ""
    if kind == "refunded" and total:
        amount, currency = _minor(total)  # cumulative, like Stripe's amount_refunded
    elif kind == "refunded":
        detail = "increment"  # this refund alone: added to what the order had (the event is applied once)
    return PaymentFact(
        kind,
        refund.get("custom_id"),
        payment_ref=capture_id,
        amount=amount,
        currency=currency,
        key=str(refund.get("id")),
        detail=detail,
    )


def facts(event_type: str, body: dict[str, Any]) -> list[PaymentFact]:
    """The facts in a PayPal webhook event or in an order we fetched."""
    if event_type == LOOKUP_ORDER:
        return order_facts(body)
    resource = body.get("resource") or {}
    if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.DECLINED"):
        fact = _capture_fact(resource, paypal_order=None, order_id=None)
        return [fact]
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        return [_refund_fact("refunded", resource)]
    if event_type == "PAYMENT.CAPTURE.REVERSED":
        return [_refund_fact("dispute_withdrawn", resource)]
    if event_type.startswith("CUSTOMER.DISPUTE."):
        return [_dispute_fact(resource)]
    return []


def _dispute_fact(dispute: dict[str, Any]) -> PaymentFact:
    """A dispute: open, its credits are frozen; won, what its reversal took comes back; else it just ends.
    The money itself moves on PAYMENT.CAPTURE.REVERSED / .REFUNDED, never on the dispute's own events."""
    amount, currency = _minor(dispute.get("dispute_amount"))
    transactions = dispute.get("disputed_transactions") or [{}]
    outcome = str((dispute.get("dispute_outcome") or {}).get("outcome_code") or "")
    kind: FactKind = "dispute_opened"
    if dispute.get("status") == "RESOLVED" or outcome:
        kind = "dispute_won" if outcome == "RESOLVED_SELLER_FAVOUR" else "dispute_closed"
    return PaymentFact(
        kind,
        None,
        payment_ref=transactions[0].get("seller_transaction_id"),
        amount=amount,
        currency=currency,
        key=str(dispute.get("dispute_id")),
        detail=outcome or str(dispute.get("status")),
    )
