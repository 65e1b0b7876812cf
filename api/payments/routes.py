"""`/api/v1/payments`: packs, own orders, and the Stripe, PayPal and crypto top-ups (thin: use cases in
orchestration/payment_*). Webhooks take no bearer token: their provider's signature is the credential."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.auth.context import auth_required, current_user_id
from api.errors import problem
from api.idempotency import idempotent
from api.pagination import PageArgsSchema
from api.payments.pages import order_page
from api.payments.schemas import (
    AcceptedSchema,
    AutoTopUpAnswerSchema,
    AutoTopUpSchema,
    CheckoutAnswerSchema,
    CheckoutSchema,
    CryptoIntentAnswerSchema,
    CryptoIntentSchema,
    OrderListArgsSchema,
    OrderPageSchema,
    OrderSchema,
    PackChoiceSchema,
    PackListSchema,
    ProviderOrderAnswerSchema,
    SubmitTxSchema,
    WebhookAnswerSchema,
)
from api.services import services
from orchestration.errors import PaymentRefused
from orchestration.payments import auto_top_up
from orchestration.payments import paypal as payments_paypal
from orchestration.payments import stripe as payments_stripe
from orchestration.payments.crypto import intents
from orchestration.payments.orders import order_view, own_order
from payments.facts import InvalidSignature, MalformedWebhook, ProviderError, RailDisabled
from runtime.packs import CreditPack, FiatPrice

blp = Blueprint("payments", __name__, url_prefix="/api/v1/payments", description="Buying credits")
me_blp = Blueprint("auto-top-up", __name__, url_prefix="/api/v1/me", description="Auto top-up")


def register_payment_errors(app: Flask) -> None:
    """Payment refusals as problem+json: a rail without its secrets is 503 naming what is missing."""

    @app.errorhandler(RailDisabled)
    def _disabled(exc: RailDisabled) -> Response:
        return problem(
            503,
            f"Payments by {exc.rail} are not available here: {', '.join(exc.missing)} not configured.",
            kind="payment-rail-disabled",
            rail=exc.rail,
            missing=exc.missing,
        )

    @app.errorhandler(InvalidSignature)
    def _unsigned(exc: InvalidSignature) -> Response:
        return problem(400, f"The webhook signature does not verify: {exc}", kind="invalid-signature")

    @app.errorhandler(MalformedWebhook)
    def _malformed(exc: MalformedWebhook) -> Response:
        return problem(400, f"The webhook is refused: {exc}", kind=exc.kind)

    @app.errorhandler(PaymentRefused)
    def _refused(exc: PaymentRefused) -> Response:
        return problem(exc.status, str(exc), kind=exc.kind)

    @app.errorhandler(ProviderError)
    def _provider(exc: ProviderError) -> Response:
        status = 503 if exc.retryable else 502
        return problem(
            status,
            f"The payment provider refused or failed: {exc}",
            kind="payment-provider-error",
            code=exc.code,
        )


def _display(price: FiatPrice) -> str:
    if not price.decimals:
        return str(price.amount)
    return f"{price.amount // 100}.{price.amount % 100:02d}"


def pack_view(pack: CreditPack) -> dict[str, Any]:
    """A pack with its price on every rail."""
    prices: list[dict[str, Any]] = []
    for rail in ("stripe", "paypal"):
        fiat: FiatPrice | None = getattr(pack, rail)
        if fiat is not None:
            prices.append(
                {
                    "rail": rail,
                    "amount": str(fiat.amount),
                    "currency": fiat.currency,
                    "display": _display(fiat),
                }
            )
    for key, amount in pack.crypto.items():
        chain, _, token = key.partition(":")
        prices.append(
            {"rail": "crypto", "amount": str(amount), "currency": token or "native", "chain_id": int(chain)}
        )
    card = pack.stripe or pack.paypal
    return {
        "id": pack.id,
        "credits": pack.credits * 1_000_000,
        "name": pack.title,
        "prices": prices,
        "price": _display(card) if card else None,
        "currency": card.currency if card else None,
    }


@blp.route("/packs")
class Packs(MethodView):
    """Credit packs."""

    @blp.response(200, PackListSchema)
    def get(self) -> dict[str, Any]:
        """The packs on sale, with a price per rail."""
        return {"items": [pack_view(pack) for pack in services().settings.payment_packs]}


@blp.route("")
class Orders(MethodView):
    """The caller's orders."""

    @auth_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(OrderListArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, OrderPageSchema)
    def get(self, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        """Own orders, newest first, with how each stands (matching the ledger's entries)."""
        return order_page(limit=limit, cursor=cursor, user_id=current_user_id(), **filters)


@blp.route("/<order_id>")
class OrderById(MethodView):
    """One of the caller's orders."""

    @auth_required
    @blp.response(200, OrderSchema)
    def get(self, order_id: str) -> dict[str, Any]:
        """An order and how it stands."""
        row = own_order(services(), user_id=current_user_id(), order_id=order_id)
        if row is None:
            abort(404, message="No such order.")
            raise AssertionError("abort returned")
        return order_view(row)


@blp.route("/stripe/checkout-sessions")
class StripeCheckout(MethodView):
    """Stripe Checkout."""

    @auth_required
    @idempotent
    @blp.arguments(CheckoutSchema)
    @blp.response(201, CheckoutAnswerSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start buying a pack: answers the Checkout Session to redirect to (credited by webhook)."""
        return payments_stripe.start_checkout(
            services(), user_id=current_user_id(), pack_id=body["pack_id"], save_card=body["save_card"]
        )


@blp.route("/stripe/webhook")
class StripeWebhook(MethodView):
    """Stripe's events."""

    @blp.response(200, WebhookAnswerSchema)
    @blp.alt_response(400, description="Bad, old or missing Stripe-Signature: nothing recorded")
    @blp.alt_response(503, description="The Stripe rail is not configured")
    def post(self) -> dict[str, str]:
        """Verify the signature on the raw body, record the event once, apply it on `critical`."""
        received = payments_stripe.receive_webhook(
            services(), request.get_data(cache=True), request.headers.get("Stripe-Signature")
        )
        return {"received": received}


@blp.route("/paypal/orders")
class PaypalOrders(MethodView):
    """PayPal Orders v2."""

    @auth_required
    @idempotent
    @blp.arguments(PackChoiceSchema)
    @blp.response(201, ProviderOrderAnswerSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a PayPal order for a pack; the buyer approves it at `approve_url`, then you capture."""
        return payments_paypal.create_order(services(), user_id=current_user_id(), pack_id=body["pack_id"])


@blp.route("/paypal/orders/<paypal_order_id>/capture")
class PaypalCapture(MethodView):
    """Capture an approved PayPal order."""

    @auth_required
    @idempotent
    @blp.response(202, AcceptedSchema)
    def post(self, paypal_order_id: str) -> dict[str, Any]:
        """Capture (retry-safe); credited once the capture is COMPLETED (a PENDING one waits)."""
        return payments_paypal.capture(services(), user_id=current_user_id(), any_id=paypal_order_id)


@blp.route("/paypal/webhook")
class PaypalWebhook(MethodView):
    """PayPal's events."""

    @blp.response(200, WebhookAnswerSchema)
    @blp.alt_response(400, description="PayPal did not verify the signature: nothing recorded")
    @blp.alt_response(503, description="The PayPal rail is not configured")
    def post(self) -> dict[str, str]:
        """Verify through PayPal's verify-webhook-signature, record the event once, apply it on `critical`."""
        headers = {name.upper(): value for name, value in request.headers.items()}
        received = payments_paypal.receive_webhook(services(), request.get_data(cache=True), headers)
        return {"received": received}


@blp.route("/crypto/intents")
class CryptoIntents(MethodView):
    """On-chain payments."""

    @auth_required
    @idempotent
    @blp.arguments(CryptoIntentSchema)
    @blp.response(201, CryptoIntentAnswerSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A deposit address of its own, the exact amount (native coin or allow-listed token), an expiry."""
        return intents.create_intent(
            services(),
            user_id=current_user_id(),
            pack_id=body["pack_id"],
            chain_id=body["chain_id"],
            token=body["token"],
        )


@blp.route("/crypto/intents/<order_id>/submit")
class CryptoSubmit(MethodView):
    """Name the transaction that paid an intent."""

    @auth_required
    @blp.arguments(SubmitTxSchema)
    @blp.response(202, AcceptedSchema)
    def post(self, body: dict[str, Any], order_id: str) -> dict[str, Any]:
        """Verify it (receipt, recipient, token, amount); credited once it is deep enough (the scanner
        finds payments nobody submitted too)."""
        return intents.submit(
            services(), user_id=current_user_id(), order_id=order_id, tx_hash=body["tx_hash"]
        )


@me_blp.route("/auto-top-up")
class AutoTopUp(MethodView):
    """The caller's auto top-up (Stripe, saved card)."""

    @auth_required
    @me_blp.response(200, AutoTopUpAnswerSchema)
    def get(self) -> dict[str, Any]:
        """The settings, and why it was turned off if it was."""
        return auto_top_up.get(services(), current_user_id())

    @auth_required
    @me_blp.arguments(AutoTopUpSchema)
    @me_blp.response(200, AutoTopUpAnswerSchema)
    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Charge the saved card for `pack_id` when the balance falls below `threshold` (at most
        `max_per_month` refills a month); 409 until a Checkout with `save_card` saved a card."""
        return auto_top_up.configure(services(), user_id=current_user_id(), **body)
