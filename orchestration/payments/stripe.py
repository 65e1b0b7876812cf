"""Stripe use cases: start a Checkout, take in a webhook, re-ask Stripe about a pending order, refund."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Row

from orchestration.payments import events, gateways, refill_recovery, saved_cards
from orchestration.payments.orders import fiat_price, start_provider_order
from orchestration.services import Services
from payments import stripe_events
from payments.facts import ProviderError


def return_url(services: Services, outcome: str, order_id: str) -> str:
    """Where the provider sends the browser back; crediting never waits for this visit."""
    base = services.settings.PAYMENT_RETURN_URL
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'payment': outcome, 'order': order_id})}"


def start_checkout(
    services: Services, *, user_id: str, pack_id: str, save_card: bool = False
) -> dict[str, Any]:
    """Create an order and its Checkout Session; answers {id, url, order_id}."""
    gateway = gateways.stripe(services)  # RailDisabled before anything is written
    pack, price = fiat_price(services, pack_id, "stripe")
    # A card is saved only as the user's own Stripe customer (created for them, metadata names them).
    customer = saved_cards.customer_for(services, user_id) if save_card else None
    row, session = start_provider_order(
        services,
        user_id=user_id,
        pack=pack,
        rail="stripe",
        create=lambda order: gateway.create_checkout_session(
            order_id=order.id,
            user_id=user_id,
            title=pack.title,
            amount=price.amount,
            currency=price.currency,
            success_url=return_url(services, "success", order.id),
            cancel_url=return_url(services, "cancel", order.id),
            customer=customer,
            save_card=save_card,
        ),
    )
    return {"id": session["id"], "url": session.get("url"), "order_id": row.id}


def receive_webhook(services: Services, payload: bytes, signature: str | None) -> str:
    """Verify a webhook on its raw body, record it, enqueue it; 'recorded', 'duplicate' or 'ignored'."""
    event = gateways.stripe(services).verify(payload, signature)  # InvalidSignature: 400
    if event["type"] not in stripe_events.HANDLED:
        return "ignored"
    recorded = events.record_and_enqueue(
        services,
        rail="stripe",
        event_id=event["id"],
        type_=event["type"],
        payload=payload.decode(),
    )
    return "recorded" if recorded.new else "duplicate"


def reconcile(services: Services, order: Row[Any], *, overdue: bool, now: datetime | None = None) -> str:
    """Ask Stripe how a pending order's session (or auto top-up PaymentIntent) stands; feed the answer in.

    An overdue order's open session is expired at Stripe first, so it can't be paid after we gave up."""
    gateway = gateways.stripe(services)
    if order.provider_ref is None and order.purpose == "auto_top_up":
        return refill_recovery.recover(services, order, now=now or datetime.now(UTC))
    if order.provider_ref is None:
        return "no session"  # its creation failed before Stripe answered: it expires by age
    if order.purpose == "auto_top_up":
        found, kind = gateway.payment_intent(order.provider_ref), "lookup.payment_intent"
        fact = stripe_events.intent_fact(found)
    else:
        found = gateway.session(order.provider_ref)
        if overdue and found.get("status") == "open":
            found = gateway.expire_session(order.provider_ref)
        kind = "lookup.checkout_session"
        fact = stripe_events.session_fact(found)
    if fact.kind == "pending":
        return "pending"
    events.feed(services, order, event_id=f"{kind}:{order.provider_ref}:{fact.kind}", type_=kind, body=found)
    return fact.kind


def refund(
    services: Services, order: Row[Any], amount: int, *, request_key: str | None = None, reason: str = ""
) -> None:
    """Refund at Stripe, then feed the charge's new cumulative refund in (the `charge.refunded` webhook
    names the same refund step, so it changes nothing more)."""
    if not order.payment_ref:
        raise ProviderError("the order has no Stripe payment to refund", retryable=False)
    gateway = gateways.stripe(services)
    total = int(order.amount_refunded) + amount
    refund = gateway.refund(
        payment_ref=order.payment_ref,
        amount=amount,
        key=f"admin-refund:{order.id}:{request_key or total}",
        reason=reason,
    )
    charge = gateway.charge(str(refund["charge"]))
    event_id = f"lookup.charge:{charge['id']}:{charge['amount_refunded']}"
    event = {"id": event_id, "type": "charge.refunded", "data": {"object": charge}}
    events.feed(services, order, event_id=event_id, type_="charge.refunded", body=event)
