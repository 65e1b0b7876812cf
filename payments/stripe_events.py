"""Stripe events and objects as PaymentFacts. One fulfilment path: a Checkout Session that is paid
(on `completed` with payment_status "paid", or on `async_payment_succeeded`), or an auto top-up's
PaymentIntent that succeeded; both are keyed by the PaymentIntent, so they never credit twice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from payments.facts import FactKind, PaymentFact

HANDLED = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refunded",
        "charge.refund.updated",
        "refund.failed",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
        "radar.early_fraud_warning.created",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
    }
)


DISPUTE_FACTS: dict[str, FactKind] = {
    "charge.dispute.created": "dispute_opened",  # its credits are held while it is open
    "charge.dispute.funds_withdrawn": "dispute_withdrawn",
    "charge.dispute.funds_reinstated": "dispute_reinstated",
    "charge.dispute.closed": "dispute_closed",  # whatever the outcome, the hold ends
}


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the object carrying it."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def _order_of(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata") or {}
    return metadata.get("order_id") or obj.get("client_reference_id")


def session_fact(session: dict[str, Any], *, event_type: str | None = None) -> PaymentFact:
    """What a Checkout Session says (from an event, or as the reconciler retrieved it)."""
    intent = session.get("payment_intent")
    base = PaymentFact(
        "pending",
        _order_of(session),
        provider_ref=session.get("id"),
        payment_ref=_id(intent),
        amount=int(session.get("amount_total") or 0),
        currency=str(session.get("currency") or "").upper(),
        customer_ref=_id(session.get("customer")),
        payment_method_ref=_id(intent.get("payment_method")) if isinstance(intent, dict) else None,
    )
    if event_type == "checkout.session.async_payment_failed":
        return replace(base, kind="failed", detail="the asynchronous payment failed")
    if event_type == "checkout.session.expired" or session.get("status") == "expired":
        return replace(base, kind="expired", detail="the checkout session expired")
    paid = session.get("payment_status") == "paid"
    if paid and (event_type != "checkout.session.completed" or session.get("status") == "complete"):
        return replace(base, kind="paid")
    return base


def intent_fact(intent: dict[str, Any], *, event_type: str | None = None) -> PaymentFact:
    """An auto top-up PaymentIntent: paid, failed or still pending."""
    status = intent.get("status")
    base = PaymentFact(
        "pending",
        _order_of(intent),
        provider_ref=intent.get("id"),
        payment_ref=intent.get("id"),
        amount=int(intent.get("amount_received") or intent.get("amount") or 0),
        currency=str(intent.get("currency") or "").upper(),
        customer_ref=_id(intent.get("customer")),
        payment_method_ref=_id(intent.get("payment_method")),
        detail=str(status),
    )
    if status == "succeeded":
        return replace(base, kind="paid", detail="")
    if event_type == "payment_intent.payment_failed" or status in ("requires_payment_method", "canceled"):
        error = intent.get("last_payment_error") or intent.get("last_error") or {}
        return replace(base, kind="failed", detail=str(error.get("code") or status))
    return base


def event_facts(event: dict[str, Any]) -> list[PaymentFact]:
    """The facts in one webhook event; [] for events we do not act on."""
    kind = str(event.get("type"))
    obj = (event.get("data") or {}).get("object") or {}
    if kind.startswith("checkout.session."):
        fact = session_fact(obj, event_type=kind)
        return [] if fact.kind == "pending" else [fact]
    if kind.startswith("payment_intent."):
        if (obj.get("metadata") or {}).get("purpose") != "auto_top_up":
            return []  # checkout payments are fulfilled from their session, once
        fact = intent_fact(obj, event_type=kind)
        return [] if fact.kind == "pending" else [fact]
    return _charge_facts(kind, obj)


def _charge_facts(kind: str, obj: dict[str, Any]) -> list[PaymentFact]:
    """Refunds, disputes and fraud warnings: about a payment already made, named by its PaymentIntent."""
    if kind == "charge.refunded":
        total = int(obj.get("amount_refunded") or 0)
        # The cumulative total names the refund step: a redelivery is the same step, a later
        # refund a bigger total; an older event arriving late claws back nothing.
        return [
            PaymentFact(
                "refunded",
                None,
                payment_ref=_id(obj.get("payment_intent")),
                amount=total,
                currency=str(obj.get("currency") or "").upper(),
                key=f"{obj.get('id')}:{total}",
            )
        ]
    if kind in DISPUTE_FACTS:
        fact_kind = DISPUTE_FACTS[kind]
        return [
            PaymentFact(
                fact_kind,
                None,
                payment_ref=_id(obj.get("payment_intent")),
                amount=int(obj.get("amount") or 0),
                currency=str(obj.get("currency") or "").upper(),
                key=str(obj.get("id")),
            )
        ]
    if kind in ("charge.refund.updated", "refund.failed"):
        if obj.get("status") != "failed":
            return []  # a refund's other updates change nothing here
        # The refund did not reach the card: its money came back to us, so its credits go back to the user.
        return [
            PaymentFact(
                "refund_failed",
                None,
                payment_ref=_id(obj.get("payment_intent")),
                amount=int(obj.get("amount") or 0),
                currency=str(obj.get("currency") or "").upper(),
                key=str(obj.get("id")),
                detail=str(obj.get("failure_reason") or "unknown"),
            )
        ]
    if kind == "radar.early_fraud_warning.created":
        # The issuer reports the card as likely stolen: the purchase's unspent credits are frozen for review.
        return [
            PaymentFact(
                "fraud_warning",
                None,
                payment_ref=_id(obj.get("payment_intent")),
                key=str(obj.get("id")),
                detail=str(obj.get("fraud_type") or "unknown"),
            )
        ]
    return []
