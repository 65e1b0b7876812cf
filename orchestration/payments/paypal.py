"""PayPal use cases: create an order, capture it, take in a webhook, reconcile, refund."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from orchestration.errors import PaymentRefused
from orchestration.payments import events, gateways
from orchestration.payments.orders import (
    fiat_price,
    find_order,
    get_order,
    start_provider_order,
)
from orchestration.payments.stripe import return_url
from orchestration.payments.units import plain_unit, send_task
from orchestration.services import Services
from payments import paypal_events
from payments.facts import MalformedWebhook, ProviderError
from runtime.packs import ZERO_DECIMAL

UNCAPTURABLE = frozenset({409, 422})  # PayPal's answers to a capture the order's state does not allow
AWAITING_BUYER = frozenset({"CREATED", "PAYER_ACTION_REQUIRED", "SAVED"})
CAPTURE_TASK = "creditflow.critical.capture_paypal_order"


def _decimals(currency: str) -> int:
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def create_order(services: Services, *, user_id: str, pack_id: str) -> dict[str, Any]:
    """Our order and PayPal's; answers {id (PayPal's), status, approve_url, order_id}."""
    gateway = gateways.paypal(services)
    pack, price = fiat_price(services, pack_id, "paypal")
    row, created = start_provider_order(
        services,
        user_id=user_id,
        pack=pack,
        rail="paypal",
        create=lambda order: gateway.create_order(
            order_id=order.id,
            amount=price.amount,
            currency=price.currency,
            decimals=price.decimals,
            title=pack.title,
            return_url=return_url(services, "success", order.id),
            cancel_url=return_url(services, "cancel", order.id),
        ),
    )
    approve = next(
        (
            link["href"]
            for link in created.get("links") or []
            if link.get("rel") in ("approve", "payer-action")
        ),
        None,
    )
    return {
        "id": created["id"],
        "status": created.get("status", "CREATED"),
        "approve_url": approve,
        "order_id": row.id,
    }


def _own(services: Services, user_id: str, any_id: str) -> Row[Any]:
    with plain_unit(services) as connection:
        row = (
            get_order(connection, any_id)
            if any_id.startswith("ord_")
            else find_order(connection, "paypal", payment_ref=None, provider_ref=any_id)
        )
    if row is None or row.user_id != user_id or row.rail != "paypal":
        raise PaymentRefused("No such PayPal order.", kind="not-found", status=404)
    return row


def _feed(services: Services, order: Row[Any], answer: dict[str, Any], source: str) -> str:
    """Record an Orders v2 answer as an event (applied on `critical`); returns the capture status."""
    captures = ((answer.get("purchase_units") or [{}])[0].get("payments") or {}).get("captures") or []
    status = str(captures[0].get("status")) if captures else str(answer.get("status"))
    capture_id = captures[0].get("id") if captures else None
    event_id = f"{source}:{answer.get('id')}:{capture_id}:{status}"
    events.feed(services, order, event_id=event_id, type_=paypal_events.LOOKUP_ORDER, body=answer)
    return status


def capture(services: Services, *, user_id: str, any_id: str) -> dict[str, Any]:
    """Capture the approved order (PayPal-Request-Id per order: a retry gets the first capture)."""
    order = _own(services, user_id, any_id)
    if order.provider_ref is None:
        raise PaymentRefused("This order never reached PayPal.", kind="not-capturable", status=409)
    gateway = gateways.paypal(services)
    standing = gateway.order(order.provider_ref)
    if standing.get("status") in AWAITING_BUYER:
        # Asked before capturing, so the capture's PayPal-Request-Id is not spent on a refusal that
        # PayPal would replay once the buyer has approved.
        raise PaymentRefused(
            f"The buyer has not approved this PayPal order yet ({standing.get('status')}).",
            kind="not-approved",
            status=409,
        )
    try:
        answer = gateway.capture(order.provider_ref, request_id=f"capture:{order.id}")
    except ProviderError as exc:
        if exc.retryable or exc.status not in UNCAPTURABLE:
            raise
        # PayPal refused this capture for what the order is (not approved yet, already captured by
        # another request): the caller's mistake or a race, not a gateway failure.
        raise PaymentRefused(
            f"PayPal will not capture this order: {exc.issue or exc.code}.",
            kind="not-capturable",
            status=409,
        ) from exc
    return {"status": _feed(services, order, answer, "capture"), "order_id": order.id}


def _event_of(payload: bytes) -> dict[str, Any]:
    """The event in a webhook body; MalformedWebhook (400) when it is not UTF-8 JSON naming an event."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedWebhook("the body is not UTF-8 JSON") from None
    if not isinstance(event, dict) or "id" not in event:
        raise MalformedWebhook("the body is not a PayPal event")
    return event


def receive_webhook(services: Services, payload: bytes, headers: dict[str, str]) -> str:
    """Verify a webhook through PayPal on its exact raw body, record it, enqueue it."""
    gateway = gateways.paypal(services)  # RailDisabled (503) first
    event = _event_of(payload)  # before PayPal is asked: it could only verify UTF-8 JSON
    gateway.verify(payload, headers)
    if event.get("event_type") not in paypal_events.HANDLED:
        return "ignored"
    recorded = events.record_and_enqueue(
        services,
        rail="paypal",
        event_id=str(event["id"]),
        type_=str(event["event_type"]),
        payload=payload.decode(),
    )
    approved = (event.get("resource") or {}).get("id")
    if event["event_type"] == "CHECKOUT.ORDER.APPROVED" and recorded.new and approved:
        # Captured now rather than at the reconciler's next pass (which still captures it if this fails).
        send_task(services, CAPTURE_TASK, str(approved))
    return "recorded" if recorded.new else "duplicate"


def capture_approved(services: Services, paypal_order_id: str) -> str:
    """Capture an order PayPal said the buyer approved; the same PayPal-Request-Id as the buyer's capture."""
    with plain_unit(services) as connection:
        order = find_order(connection, "paypal", payment_ref=None, provider_ref=paypal_order_id)
    if order is None or order.status != "pending":
        return "not ours" if order is None else order.status
    try:
        answer = gateways.paypal(services).capture(paypal_order_id, request_id=f"capture:{order.id}")
    except ProviderError as exc:
        if exc.retryable or exc.status not in UNCAPTURABLE:
            raise
        return "not capturable"  # captured meanwhile by the buyer's own call, or no longer approved
    return _feed(services, order, answer, "capture")


def reconcile(services: Services, order: Row[Any], *, overdue: bool, now: datetime | None = None) -> str:
    """Ask PayPal about a pending order; capture it ourselves if the buyer approved but we never did."""
    if order.provider_ref is None:
        return "no order"
    gateway = gateways.paypal(services)
    answer = gateway.order(order.provider_ref)
    if answer.get("status") == "APPROVED":
        answer = gateway.capture(order.provider_ref, request_id=f"capture:{order.id}")
    if answer.get("status") in AWAITING_BUYER | {"APPROVED"}:
        return "pending"
    return _feed(services, order, answer, "reconcile")


def refund(
    services: Services, order: Row[Any], amount: int, *, request_key: str | None = None, reason: str = ""
) -> None:
    """Refund at PayPal and feed the refund in as the PAYMENT.CAPTURE.REFUNDED webhook would."""
    if not order.payment_ref:
        raise ProviderError("the order has no PayPal capture to refund", retryable=False)
    total = int(order.amount_refunded) + amount
    answer = gateways.paypal(services).refund(
        order.payment_ref,
        amount=amount,
        currency=order.currency,
        decimals=_decimals(order.currency),
        request_id=f"refund:{order.id}:{request_key or total}",
        note=reason,
    )
    answer.setdefault("custom_id", order.id)
    event_id = f"refund:{answer.get('id')}"
    event = {"id": event_id, "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": answer}
    events.feed(services, order, event_id=event_id, type_="PAYMENT.CAPTURE.REFUNDED", body=event)
