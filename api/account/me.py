"""`/api/v1/me`: the signed-in user, their balance and preferences."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint, abort

import ledger
from api.auth import auth_required, current_auth
from api.money import Credits, credits_pattern
from api.services import services
from orchestration.accounts.spending import PERIODS
from orchestration.accounts.users import COST_MODES, get_user, set_preferences
from orchestration.notify.thresholds import MAX_THRESHOLDS
from orchestration.replies.conversations import check_default_chat_model

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")


class BalanceSchema(ma.Schema):
    """Credits as decimal strings; `available = posted - held`."""

    available = Credits(required=True)
    held = Credits(required=True)
    posted = Credits(required=True)


class Thresholds(ma.fields.Field):  # type: ignore[type-arg]
    """One credits amount, or a list of them (answered in the shape it was sent)."""

    def __init__(self, **kwargs: Any) -> None:
        self._one = Credits(sign="non-negative")
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, list):
            return [self._one._serialize(item, attr, obj) for item in value]
        return self._one._serialize(value, attr, obj)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            return self._one.deserialize(value)
        if not 1 <= len(value) <= MAX_THRESHOLDS:
            raise ma.ValidationError(f"Between 1 and {MAX_THRESHOLDS} thresholds.")
        if len({repr(item) for item in value}) < len(value):
            raise ma.ValidationError("Each threshold once.")  # the document's uniqueItems
        return sorted({self._one.deserialize(item) for item in value})  # "5" and "5.0" are one threshold


class PreferencesSchema(ma.Schema):
    """What the user chose; every field may be sent alone in a PATCH."""

    default_chat_model = ma.fields.String(allow_none=True, validate=ma.validate.Length(1, 100))
    cost_mode = ma.fields.String(validate=ma.validate.OneOf(COST_MODES))
    low_balance_threshold = Thresholds(
        allow_none=True,
        metadata={
            "oneOf": [
                {"type": "string", "pattern": credits_pattern("non-negative")},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": credits_pattern("non-negative")},
                    "minItems": 1,
                    "maxItems": MAX_THRESHOLDS,
                    "uniqueItems": True,
                },
                {"type": "null"},
            ],
            "description": "Warn below this balance: one amount, or a list of up to "
            f"{MAX_THRESHOLDS} (each told once per crossing, and again after a top-up lifts the balance back)"
        },
    )
    spending_limit = Credits(
        sign="positive",
        allow_none=True,
        metadata={"description": "At most this many credits of jobs per period (a job past it is a 402)"},
    )
    spending_limit_period = ma.fields.String(
        validate=ma.validate.OneOf(PERIODS), metadata={"description": "UTC day or calendar month"}
    )


class MeSchema(ma.Schema):
    """The signed-in user."""

    id = ma.fields.String(required=True)
    external_id = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)
    balance = ma.fields.Nested(BalanceSchema, required=True)
    preferences = ma.fields.Nested(PreferencesSchema, required=True)


def balance_dict(balance: ledger.Balance) -> dict[str, int]:
    """A ledger balance as the API shows it (before serialising to credit strings)."""
    return {"available": balance.available, "held": balance.held, "posted": balance.posted}


@blp.route("", methods=["GET"])
@auth_required
@blp.response(200, MeSchema)
def me() -> dict[str, Any]:
    """The signed-in user, with balance and preferences."""
    with services().uow() as session:
        user = get_user(session, user_id=current_auth().user_id)
        if user is None:
            abort(404, message="Not found.")
            raise AssertionError("abort returned")
        balance = ledger.balance(session, user_id=user.id)
    return {**user.__dict__, "balance": balance_dict(balance)}


@blp.route("/preferences", methods=["PATCH"])
@auth_required
@blp.arguments(PreferencesSchema)
@blp.response(200, PreferencesSchema)
@blp.alt_response(422, description="Invalid preferences, or a default_chat_model that is not a chat model")
def patch_preferences(changes: dict[str, Any]) -> dict[str, Any]:
    """Change some preferences; answers all of them (422 for a model that is not a chat model)."""
    check_default_chat_model(services(), changes.get("default_chat_model"))
    return set_preferences(services(), user_id=current_auth().user_id, changes=changes)
