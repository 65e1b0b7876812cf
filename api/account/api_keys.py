"""`/api/v1/api-keys`: make (shown once), list by prefix, revoke. Managing keys needs a user's token."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint, abort

from api.auth import auth_required, current_auth
from api.money import Credits
from api.pagination import PageArgsSchema, decode_time_cursor, page, page_schema
from api.services import services
from orchestration.accounts.api_keys import ApiKey, create_key, list_keys, revoke_key

blp = Blueprint("api-keys", __name__, url_prefix="/api/v1/api-keys", description="API keys")


class NewApiKeySchema(ma.Schema):
    """A key to make; `daily_credit_limit` caps what holds placed with it may reserve per UTC day."""

    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 100))
    daily_credit_limit = Credits(sign="positive", allow_none=True, load_default=None)


class ApiKeySchema(ma.Schema):
    """A key as listed: its prefix, never the key."""

    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    prefix = ma.fields.String(required=True)
    daily_credit_limit = Credits(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)
    last_used_at = ma.fields.AwareDateTime(allow_none=True)


class CreatedApiKeySchema(ApiKeySchema):
    """A new key: `key` is shown this once."""

    key = ma.fields.String(required=True, metadata={"description": "Use as `Authorization: Bearer <key>`"})


ApiKeyPageSchema = page_schema(ApiKeySchema, "ApiKeyPageSchema")


def _position(key: ApiKey) -> list[Any]:
    return [key.created_at.isoformat(), key.id]


@blp.route("", methods=["POST"])
@auth_required
@blp.arguments(NewApiKeySchema)
@blp.response(201, CreatedApiKeySchema)
def create(args: dict[str, Any]) -> dict[str, Any]:
    """Make an API key; the answer holds the key, which is not stored and cannot be shown again."""
    with services().uow() as session:
        key, secret = create_key(session, user_id=current_auth().user_id, **args)
    return {**key.__dict__, "key": secret}


@blp.route("", methods=["GET"])
@auth_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, ApiKeyPageSchema)
def list_(args: dict[str, Any]) -> dict[str, Any]:
    """The caller's live keys, newest first."""
    after = decode_time_cursor(args["cursor"])
    with services().uow() as session:
        keys = list_keys(session, user_id=current_auth().user_id, limit=args["limit"] + 1, after=after)
    return page(keys, limit=args["limit"], position=_position)


@blp.route("/<key_id>", methods=["DELETE"])
@auth_required
@blp.response(204)
def revoke(key_id: str) -> None:
    """Revoke a key: it stops working at once. Someone else's key is a 404."""
    with services().uow() as session:
        if not revoke_key(session, user_id=current_auth().user_id, key_id=key_id[:40]):
            abort(404, message="Not found.")
