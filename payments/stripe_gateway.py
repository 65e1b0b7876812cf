"""Stripe through the official `stripe` library: Checkout Sessions, refunds, off-session charges, and
webhook signatures checked on the raw body (the library's default tolerance of 300 s)."""

from __future__ import annotations

import json
from typing import Any

import stripe

from payments.facts import InvalidSignature, MalformedWebhook, ProviderError, RailDisabled
from runtime.settings import Settings

LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})  # Stripe's enum


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _provider_error(exc: stripe.StripeError) -> ProviderError:
    status = exc.http_status or 0
    # An idempotency key already used with other parameters: the first request did reach Stripe, so
    # asking again later (its PaymentIntent is found by search) may succeed.
    retryable = (
        isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.IdempotencyError)
        or status >= 500
    )
    return ProviderError(
        f"stripe: {exc.user_message or exc}", retryable=retryable, code=exc.code, status=status or None
    )


class StripeGateway:
    """The Stripe API for one account, and its webhook secret."""

    def __init__(self, client: stripe.StripeClient, webhook_secret: str, *, livemode: bool = False) -> None:
        if not webhook_secret.strip():
            raise RailDisabled("stripe", ["STRIPE_WEBHOOK_SECRET"])
        self.client = client
        self.webhook_secret = webhook_secret
        self.livemode = livemode  # a live key takes live events only, a test key test events only

    @classmethod
    def create_service(cls, settings: Settings) -> StripeGateway:
        """Built from settings; RailDisabled when a secret is missing."""
        missing = settings.payment_rail_missing("stripe")
        if missing:
            raise RailDisabled("stripe", missing)
        client = stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses={"api": settings.STRIPE_API_BASE},
            http_client=stripe.RequestsClient(timeout=settings.PAYMENT_HTTP_TIMEOUT_S),
            max_network_retries=2,
        )
        live = settings.STRIPE_SECRET_KEY.startswith(LIVE_KEY_PREFIXES)
        return cls(client, settings.STRIPE_WEBHOOK_SECRET, livemode=live)

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event in a webhook body, if its Stripe-Signature is valid and recent."""
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self.webhook_secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidSignature(str(exc).split(".")[0]) from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or "type" not in event:
            raise InvalidSignature("the body is not a Stripe event")
        if event.get("livemode") is not self.livemode:  # absent or not a boolean: refused too
            raise MalformedWebhook(
                f"a {'live' if event.get('livemode') else 'test'} event for a "
                f"{'live' if self.livemode else 'test'} key",
                kind="livemode-mismatch",
            )
        return event

    def create_checkout_session(
        self,
        *,
        order_id: str,
        user_id: str,
        title: str,
        amount: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        customer: str | None = None,
        save_card: bool = False,
    ) -> dict[str, Any]:
        """A hosted Checkout Session for one order (order and user in metadata and client_reference_id)."""
        metadata = {"order_id": order_id, "user_id": user_id}
        intent: dict[str, Any] = {"metadata": metadata}
        if save_card:
            intent["setup_future_usage"] = "off_session"  # for auto top-up
            intent["metadata"] = {**metadata, "save_card": "true"}  # the card is kept from this one only
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": order_id,
            "metadata": metadata,
            "payment_intent_data": intent,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount,
                        "product_data": {"name": title},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if customer:
            params["customer"] = customer
        elif save_card:
            params["customer_creation"] = "always"
        try:
            session = self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"checkout:{order_id}"},
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return _plain(session)

    def create_customer(self, *, user_id: str) -> dict[str, Any]:
        """The Stripe customer of one of our users (its metadata names them); created once per user."""
        try:
            customer = self.client.v1.customers.create(
                {"metadata": {"user_id": user_id}}, options={"idempotency_key": f"customer:{user_id}"}
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return _plain(customer)

    def session(self, session_id: str) -> dict[str, Any]:
        """A Checkout Session as Stripe has it now (the reconciler's question)."""
        try:
            return _plain(self.client.v1.checkout.sessions.retrieve(session_id))
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """Close an open Checkout Session so nobody pays an order we gave up on; answers it as it ends."""
        try:
            return _plain(self.client.v1.checkout.sessions.expire(session_id))
        except stripe.InvalidRequestError:
            return self.session(session_id)  # no longer open (completed meanwhile): as it stands
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        """A PaymentIntent (its metadata names our order)."""
        try:
            return _plain(self.client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc

    def find_payment_intent(self, order_id: str) -> dict[str, Any] | None:
        """The PaymentIntent whose metadata names our order (Stripe's search), or None."""
        try:
            found = self.client.v1.payment_intents.search({"query": f"metadata['order_id']:'{order_id}'"})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        intents = [_plain(intent) for intent in found.data]
        return intents[0] if intents else None

    def charge(self, charge_id: str) -> dict[str, Any]:
        """A charge (its cumulative `amount_refunded`)."""
        try:
            return _plain(self.client.v1.charges.retrieve(charge_id))
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc

    def refund(self, *, payment_ref: str, amount: int, key: str, reason: str = "") -> dict[str, Any]:
        """Refund part or all of a payment; the key makes a retried call refund once. The admin's reason
        goes in the metadata, and as Stripe's own `reason` when it is one of Stripe's."""
        params: dict[str, Any] = {"payment_intent": payment_ref, "amount": amount}
        if reason:
            params["metadata"] = {"reason": reason[:500]}
        if reason in REFUND_REASONS:
            params["reason"] = reason
        try:
            refund = self.client.v1.refunds.create(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return _plain(refund)

    def charge_saved_card(
        self,
        *,
        customer: str,
        payment_method: str,
        amount: int,
        currency: str,
        order_id: str,
        user_id: str,
    ) -> dict[str, Any]:
        """Charge a saved card off-session (auto top-up); a decline answers the failed PaymentIntent."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": {"order_id": order_id, "user_id": user_id, "purpose": "auto_top_up"},
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"auto-top-up:{order_id}"},
            )
        except stripe.CardError as exc:
            # Declines and authentication_required come back as a 402 naming the PaymentIntent.
            body = exc.json_body if isinstance(exc.json_body, dict) else {}
            error = body.get("error") or {}
            found = error.get("payment_intent") or {"status": "requires_payment_method"}
            return {
                **found,
                "last_error": {
                    "code": exc.code or error.get("code"),
                    "message": error.get("message", str(exc)),
                },
            }
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return _plain(intent)
