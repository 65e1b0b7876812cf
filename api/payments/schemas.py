"""Marshmallow schemas of payments: packs, orders, the requests that start a payment."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import marshmallow as ma

from api.money import Credits
from api.pagination import page_schema
from orchestration.payments.tables import ORDER_STATUSES, RAILS

TX_HASH = r"^0x[0-9a-fA-F]{64}$"


class PriceSchema(ma.Schema):
    """A pack's price on one rail; `amount` in minor units as a decimal string (wei for crypto)."""

    rail = ma.fields.String(required=True)
    amount = ma.fields.String(required=True)
    currency = ma.fields.String(required=True)
    chain_id = ma.fields.Integer(allow_none=True)
    display = ma.fields.String(metadata={"description": "e.g. 24.00 (fiat only)"})


class PackSchema(ma.Schema):
    """A credit pack on sale."""

    id = ma.fields.String(required=True)
    credits = Credits(required=True)
    name = ma.fields.String(required=True)
    price = ma.fields.String(allow_none=True, metadata={"description": "Card price, major units"})
    currency = ma.fields.String(allow_none=True)
    prices = ma.fields.List(ma.fields.Nested(PriceSchema), required=True)


class PackListSchema(ma.Schema):
    """Every pack on sale."""

    items = ma.fields.List(ma.fields.Nested(PackSchema), required=True)


class OrderSchema(ma.Schema):
    """A payment attempt and how it stands; `credited` is what it has credited net of refunds."""

    id = ma.fields.String(required=True)
    rail = ma.fields.String(required=True, validate=ma.validate.OneOf(RAILS))
    pack_id = ma.fields.String(required=True)
    purpose = ma.fields.String()
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(ORDER_STATUSES))
    credits = Credits(required=True)
    credited = Credits(required=True)
    amount = ma.fields.String(required=True, metadata={"description": "Expected, in minor units"})
    currency = ma.fields.String(required=True)
    amount_received = ma.fields.String()
    amount_refunded = ma.fields.String()
    chain_id = ma.fields.Integer(allow_none=True)
    deposit_address = ma.fields.String(allow_none=True)
    provider_ref = ma.fields.String(allow_none=True)
    payment_ref = ma.fields.String(allow_none=True)
    failure = ma.fields.String(allow_none=True)
    user_id = ma.fields.String()
    created_at = ma.fields.AwareDateTime(required=True, default_timezone=UTC)
    updated_at = ma.fields.AwareDateTime(default_timezone=UTC)
    expires_at = ma.fields.AwareDateTime(default_timezone=UTC)
    credited_at = ma.fields.AwareDateTime(allow_none=True, default_timezone=UTC)


OrderPageSchema = page_schema(OrderSchema, "PaymentOrderPage")


class OrderListArgsSchema(ma.Schema):
    """Filters of the order lists."""

    rail = ma.fields.String(validate=ma.validate.OneOf(RAILS))
    status = ma.fields.String(validate=ma.validate.OneOf(ORDER_STATUSES))


class AdminOrderListArgsSchema(OrderListArgsSchema):
    """Admins may filter by user too."""

    user_id = ma.fields.String(validate=ma.validate.Length(1, 100))


class PackChoiceSchema(ma.Schema):
    """Which pack to buy."""

    pack_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))


class CheckoutSchema(PackChoiceSchema):
    """A Stripe Checkout; `save_card` keeps the card for auto top-up."""

    save_card = ma.fields.Boolean(load_default=False)


class CheckoutAnswerSchema(ma.Schema):
    """The Checkout Session to send the browser to."""

    id = ma.fields.String(required=True)
    url = ma.fields.String(required=True, allow_none=True)
    order_id = ma.fields.String(required=True)


class ProviderOrderAnswerSchema(ma.Schema):
    """A PayPal order: approve it at `approve_url`, then capture it."""

    id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    approve_url = ma.fields.String(allow_none=True)
    order_id = ma.fields.String(required=True)


class CryptoIntentSchema(PackChoiceSchema):
    """A crypto payment intent: the chain, and a token symbol (omit for the chain's native coin)."""

    chain_id = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 2**53))
    token = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(1, 20))


class CryptoIntentAnswerSchema(ma.Schema):
    """Where and exactly how much to pay, until when."""

    id = ma.fields.String(required=True)
    chain_id = ma.fields.Integer(required=True)
    deposit_address = ma.fields.String(required=True)
    amount_wei = ma.fields.String(required=True, metadata={"description": "Base units (wei or token units)"})
    currency = ma.fields.String(required=True)
    token_address = ma.fields.String(allow_none=True)
    confirmations = ma.fields.Integer(required=True)
    expires_at = ma.fields.AwareDateTime(required=True, default_timezone=UTC)


class SubmitTxSchema(ma.Schema):
    """The transaction that paid an intent."""

    tx_hash = ma.fields.String(required=True, validate=ma.validate.Regexp(TX_HASH))


class AcceptedSchema(ma.Schema):
    """Taken in; the outcome comes later (order status, `/me/events`)."""

    status = ma.fields.String(required=True)
    order_id = ma.fields.String()


class WebhookAnswerSchema(ma.Schema):
    """What the webhook did with the event."""

    received = ma.fields.String(required=True, metadata={"description": "recorded, duplicate or ignored"})


class RefundSchema(ma.Schema):
    """An admin refund: the whole order, or `amount` in its minor units."""

    amount = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Regexp(r"^[1-9][0-9]{0,30}$")
    )
    reason = ma.fields.String(load_default="requested_by_customer", validate=ma.validate.Length(1, 200))


class MinorUnits(ma.fields.Field[int]):
    """A whole amount of a currency's minor units, given as a JSON integer or a string of digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,17}", value):
            return int(value)
        raise ma.ValidationError("A positive whole number of minor units (e.g. \"4800\" or 4800).")


class AutoTopUpSchema(ma.Schema):
    """Auto top-up: charge the saved card for `pack_id` when the balance falls below `threshold`."""

    enabled = ma.fields.Boolean(required=True)
    threshold = Credits(required=True)
    pack_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))
    max_per_month = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 100))
    max_amount_per_month = MinorUnits(
        load_default=None,
        metadata={"description": "A month's money cap, minor units of the pack's currency"},
    )

    @ma.validates("threshold")
    def _non_negative(self, value: int, **_kwargs: Any) -> None:
        if value < 0:
            raise ma.ValidationError("Must not be negative.")


class AutoTopUpAnswerSchema(ma.Schema):
    """The auto top-up as it stands (turned off, with the reason, after SCA or repeated failures)."""

    enabled = ma.fields.Boolean(required=True)
    threshold = Credits(required=True)
    pack_id = ma.fields.String(required=True, allow_none=True, metadata={"description": "null until set"})
    max_per_month = ma.fields.Integer(required=True)
    max_amount_per_month = ma.fields.String(required=True, allow_none=True)
    currency = ma.fields.String(required=True, allow_none=True)
    failures = ma.fields.Integer(required=True)
    disabled_reason = ma.fields.String(required=True, allow_none=True)
    has_payment_method = ma.fields.Boolean(required=True)
