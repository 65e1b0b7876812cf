"""Marshmallow schemas of models, conversations and messages."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.fields import JsonInteger, QueryInteger, UtcDateTime
from api.money import Credits
from api.pagination import page_schema


class ModelSchema(ma.Schema):
    """A model of the catalog; pricing in credits (chat: per million input and output tokens)."""

    id = ma.fields.String(required=True)
    provider = ma.fields.String(required=True)
    kind = ma.fields.String(
        required=True, validate=ma.validate.OneOf(("chat", "image", "vision", "embedding"))
    )
    capabilities = ma.fields.Dict(required=True)
    pricing = ma.fields.Dict(keys=ma.fields.String(), values=Credits(), required=True)
    price_version = ma.fields.String(required=True)
    available = ma.fields.Boolean(required=True)
    unavailable_reason = ma.fields.String(
        allow_none=True, metadata={"description": "Why the model is not available (when a provider says)"}
    )


class ModelListSchema(ma.Schema):
    """Every model listed here."""

    items = ma.fields.List(ma.fields.Nested(ModelSchema), required=True)


class NewConversationSchema(ma.Schema):
    """A conversation to start."""

    title = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=200))
    model = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(1, 100))


class ConversationSchema(ma.Schema):
    """A conversation."""

    id = ma.fields.String(required=True)
    title = ma.fields.String(allow_none=True)
    model = ma.fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime()


ConversationPageSchema = page_schema(ConversationSchema, "ConversationPage")


class UsageSchema(ma.Schema):
    """Tokens read and written."""

    input_tokens = ma.fields.Integer()
    output_tokens = ma.fields.Integer()


class MessageSchema(ma.Schema):
    """A message: the user's, or the assistant's reply with its usage and cost."""

    id = ma.fields.String(required=True)
    position = ma.fields.Integer(required=True)
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(("user", "assistant")))
    content = ma.fields.String(required=True)
    model = ma.fields.String(allow_none=True)
    job_id = ma.fields.String(allow_none=True)
    usage = ma.fields.Nested(UsageSchema, allow_none=True)
    cost = Credits(allow_none=True)
    finish_reason = ma.fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)


class ConversationDetailSchema(ConversationSchema):
    """A conversation with its messages in order."""

    messages = ma.fields.List(ma.fields.Nested(MessageSchema), required=True)
    total_charged = Credits(required=True, metadata={"description": "What its replies were charged so far"})


class NewMessageSchema(ma.Schema):
    """A message to send; the reply comes from a `chat` job."""

    content = ma.fields.String(required=True, validate=ma.validate.Length(1, 100_000))
    model = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(1, 100))
    max_tokens = JsonInteger(
        load_default=None, allow_none=True, validate=ma.validate.Range(1, 32_768)
    )


class MessageArgsSchema(ma.Schema):
    """Query arguments of posting a message."""

    on_busy = ma.fields.String(
        load_default="queue",
        validate=ma.validate.OneOf(("queue", "reject")),
        metadata={"description": "While the previous reply runs: queue behind it, or answer 409"},
    )


class SearchArgsSchema(ma.Schema):
    """Query arguments of a search over one's conversations."""

    q = ma.fields.String(
        required=True, validate=ma.validate.Length(1, 500), metadata={"description": "What to find"}
    )
    limit = QueryInteger(load_default=10, validate=ma.validate.Range(1, 50))
    model = ma.fields.String(
        load_default=None, validate=ma.validate.Length(1, 100), metadata={"description": "An embedding model"}
    )


class SearchHitSchema(ma.Schema):
    """A message of one's conversations and its similarity to the query (cosine, -1 to 1)."""

    message_id = ma.fields.String(required=True)
    conversation_id = ma.fields.String(required=True)
    conversation_title = ma.fields.String(allow_none=True)
    position = ma.fields.Integer(required=True)
    role = ma.fields.String(required=True)
    excerpt = ma.fields.String(required=True)
    created_at = UtcDateTime(required=True)
    score = ma.fields.Float(required=True)


class SearchSchema(ma.Schema):
    """Ranked messages, the embedding model, what was embedded and its charge (credits)."""

    model = ma.fields.String(required=True)
    items = ma.fields.List(ma.fields.Nested(SearchHitSchema), required=True)
    searched = ma.fields.Integer(required=True)
    not_yet_embedded = ma.fields.Integer(required=True)
    usage = ma.fields.Dict(required=True)
    cost = Credits(required=True)


def model_view(spec: Any) -> dict[str, Any]:
    """A catalog model as the ModelSchema expects it."""
    return {
        "id": spec.id,
        "provider": spec.provider,
        "kind": spec.kind,
        "capabilities": dict(spec.capabilities),
        "pricing": dict(spec.pricing),
        "price_version": spec.price_version,
        "available": spec.available,
        "unavailable_reason": spec.unavailable_reason,
    }
