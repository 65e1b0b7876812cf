"""`/api/v1/admin`: credit grants and ledger verification (admins only)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint, abort

import ledger
from api.auth import admin_required, current_auth
from api.idempotency import current_idempotency_key, idempotent
from api.money import Credits
from api.services import services
from orchestration.users import get_user

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Administration")


class GrantSchema(ma.Schema):
    """Promotional credits for a user, optionally expiring."""

    user_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))
    credits = Credits(required=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    expires_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)

    @ma.validates("credits")
    def _positive(self, value: int, **_kwargs: Any) -> None:
        if value <= 0 or value > 10**9 * ledger.MICRO:
            raise ma.ValidationError("Must be positive and at most 1000000000.")

    @ma.validates("expires_at")
    def _future(self, value: datetime | None, **_kwargs: Any) -> None:
        if value is not None and value <= datetime.now(UTC):
            raise ma.ValidationError("Must be in the future.")


class GrantResultSchema(ma.Schema):
    """The grant as booked."""

    id = ma.fields.String(required=True, metadata={"description": "The promotional lot"})
    entry_id = ma.fields.String(required=True)
    user_id = ma.fields.String(required=True)
    credits = Credits(required=True)
    reason = ma.fields.String(required=True)
    expires_at = ma.fields.AwareDateTime(allow_none=True)


class VerifySchema(ma.Schema):
    """What a full ledger verification found."""

    ok = ma.fields.Boolean(required=True)
    entries_checked = ma.fields.Integer(required=True)
    checkpoints_checked = ma.fields.Integer()
    first_bad_entry = ma.fields.String(allow_none=True)
    problems = ma.fields.List(ma.fields.Dict())
    seconds = ma.fields.Float()


@blp.route("/grants", methods=["POST"])
@admin_required
@idempotent
@blp.arguments(GrantSchema)
@blp.response(201, GrantResultSchema)
def create_grant(args: dict[str, Any]) -> dict[str, Any]:
    """Grant credits to a user (send an Idempotency-Key: a retry then grants once)."""
    key = current_idempotency_key()
    client_key = f"admin-grant:{current_auth().user_id}:{key or secrets.token_hex(16)}"
    with services().uow() as session:
        if get_user(session, user_id=args["user_id"]) is None:
            abort(404, message="No such user.")
        receipt = ledger.grant(
            session, user_id=args["user_id"], amount=args["credits"], reason=args["reason"],
            expires_at=args["expires_at"], idempotency_key=client_key,
        )
    return {**args, "id": receipt.lot_id, "entry_id": receipt.entry_ids[0]}


@blp.route("/ledger/verify", methods=["GET"])
@admin_required
@blp.response(200, VerifySchema)
def verify() -> dict[str, Any]:
    """Recompute every hash, balance and checkpoint signature; name the first bad entry."""
    key = services().settings.LEDGER_SIGNING_KEY
    if not key:
        abort(503, message="LEDGER_SIGNING_KEY is not configured.")
    with services().uow(snapshot=True) as db:
        report = ledger.verify(db, verifier=ledger.verifier_from_key(key))
    return report.as_dict()
