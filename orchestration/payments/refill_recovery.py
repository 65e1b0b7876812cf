"""Auto top-up refills whose charge Stripe never answered (a timeout, a 5xx): the card may have been charged.

The refill stays pending (no second refill meanwhile) and the reconciler finds its PaymentIntent again:
by Stripe's search on the order id in the intent's metadata, or, while Stripe still replays the charge's
idempotency key (24 h), by re-sending the very same charge, which answers the first PaymentIntent if
there was one and charges once if the first request never reached Stripe. Never a second charge."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, select

from orchestration.payments import events, gateways
from orchestration.payments.orders import attach_provider_ref
from orchestration.payments.tables import auto_top_ups
from orchestration.payments.units import aware, plain_unit
from orchestration.services import Services
from payments import stripe_events
from payments.facts import ProviderError

log = logging.getLogger(__name__)

# Stripe keeps an idempotency key for 24 hours: re-send only well inside that, or a re-send charges anew.
REPLAY_WINDOW = timedelta(hours=23)
# Stripe retries a webhook for up to 3 days: an unanswered refill stays pending past that.
UNANSWERED_TTL = timedelta(days=4)


def charge_params(settings: Row[Any], order: Row[Any]) -> dict[str, Any]:
    """The off-session charge of a refill; the same order gives the same call (and idempotency key)."""
    return {
        "customer": settings.customer_ref,
        "payment_method": settings.payment_method_ref,
        "amount": int(order.amount),
        "currency": order.currency,
        "order_id": order.id,
        "user_id": order.user_id,
    }


def record_intent(services: Services, order: Row[Any], intent: dict[str, Any]) -> str:
    """Remember the refill's PaymentIntent and feed how it stands in (applied on `critical`)."""
    fact = stripe_events.intent_fact(intent)
    if intent.get("id"):
        with plain_unit(services) as connection:
            attach_provider_ref(connection, order.id, str(intent["id"]), datetime.now(UTC))
    if fact.kind == "pending" or not intent.get("id"):
        return "pending"
    events.feed(
        services,
        order,
        event_id=f"lookup.payment_intent:{intent['id']}:{fact.kind}",
        type_="lookup.payment_intent",
        body=intent,
    )
    return fact.kind


def recover(services: Services, order: Row[Any], *, now: datetime) -> str:
    """Find an unanswered refill's PaymentIntent (search, then a replayed charge); 'pending' if none yet."""
    gateway = gateways.stripe(services)
    replayable = now - aware(order.created_at) < REPLAY_WINDOW
    try:
        intent = gateway.find_payment_intent(order.id)
    except ProviderError as exc:
        if exc.retryable or not replayable:
            raise
        # Search refused (it is not offered in every Stripe region): the replayed charge still answers.
        log.warning("searching the PaymentIntent of refill %s failed: %s", order.id, exc)
        intent = None
    if intent is None and replayable:
        with plain_unit(services) as connection:
            settings = connection.execute(
                select(auto_top_ups).where(auto_top_ups.c.user_id == order.user_id)
            ).first()
        # Only while the user still wants refills from this customer: a re-send may be the first charge.
        if settings is not None and settings.enabled and settings.customer_ref == order.customer_ref:
            intent = gateway.charge_saved_card(**charge_params(settings, order))
    return "pending" if intent is None else record_intent(services, order, intent)
