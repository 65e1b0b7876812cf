"""Schemas of `/api/v1/webhooks`."""

from __future__ import annotations

import marshmallow as ma

from api.pagination import PageArgsSchema, page_schema
from orchestration.notify.watch import EVENT_TYPES

DELIVERY_STATUSES = ("pending", "succeeded", "failed", "canceled")
URL_PATTERN = "^https?://[!-~]+$"  # printable ASCII (an international name in its punycode form)


class NewWebhookSchema(ma.Schema):
    """An endpoint to register: an http(s) URL and the events it wants."""

    # The outbound guard decides the rest (a public address, a web port), answering invalid-webhook-url.
    url = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(1, 2000), ma.validate.Regexp(URL_PATTERN)],
        metadata={"pattern": URL_PATTERN, "description": "http(s) URL of a public receiver"},
    )
    events = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(EVENT_TYPES)),
        required=True,
        validate=ma.validate.Length(1, len(EVENT_TYPES)),
    )


class WebhookSchema(ma.Schema):
    """An endpoint as listed (never its secret)."""

    id = ma.fields.String(required=True)
    url = ma.fields.String(required=True)
    events = ma.fields.List(ma.fields.String(), required=True)
    status = ma.fields.String(required=True, metadata={"description": "enabled or disabled"})
    disabled_reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)


class CreatedWebhookSchema(WebhookSchema):
    """A new endpoint: `secret` (whsec_...) is shown this once; verify deliveries with it."""

    secret = ma.fields.String(required=True)


class WebhookListSchema(ma.Schema):
    """The user's endpoints."""

    items = ma.fields.List(ma.fields.Nested(WebhookSchema), required=True)


class RotatedSchema(ma.Schema):
    """A new secret (shown once); the previous one also signs deliveries until `previous_valid_until`."""

    id = ma.fields.String(required=True)
    secret = ma.fields.String(required=True)
    previous_valid_until = ma.fields.AwareDateTime(required=True)


class TestSentSchema(ma.Schema):
    """A `webhook.test` notification queued for delivery; find it in the delivery log."""

    notification_id = ma.fields.String(required=True)


class DeliverySchema(ma.Schema):
    """One delivery of a notification to an endpoint; `webhook_id` is the `webhook-id` header it carries."""

    id = ma.fields.String(required=True)
    webhook_id = ma.fields.String(required=True, attribute="notification_id")
    endpoint_id = ma.fields.String(required=True)
    event_type = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"description": ", ".join(DELIVERY_STATUSES)})
    attempts = ma.fields.Integer(required=True)
    next_attempt_at = ma.fields.AwareDateTime(allow_none=True)
    last_attempt_at = ma.fields.AwareDateTime(allow_none=True)
    response_status = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    replay_of = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)


class DeliveryArgsSchema(PageArgsSchema):
    """Filters of the delivery log."""

    endpoint_id = ma.fields.String(load_default=None, validate=ma.validate.Length(1, 40))
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATUSES))


DeliveryPageSchema = page_schema(DeliverySchema, "DeliveryPageSchema")
