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
from api.services import ledger_verifier, services
from orchestration.accounts.users import get_user

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Administration")


class GrantSchema(ma.Schema):
    """Promotional credits for a user, optionally expiring."""

    user_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))
    credits = Credits(sign="positive", whole_digits=9, required=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    expires_at = ma.fields.AwareDateTime(
        load_default=None, allow_none=True, metadata={"description": "In the future (422 expiry-in-the-past)"}
    )


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
    if args["expires_at"] is not None and args["expires_at"] <= datetime.now(UTC):
        # Not a matter of syntax, so not in the schema: a time the document can't call valid or not.
        abort(422, message="expires_at must be in the future.", kind="expiry-in-the-past",
              errors={"expires_at": ["Must be in the future."]})
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
    verifier = ledger_verifier()
    if verifier is None:
        abort(503, message="No ledger key is configured (LEDGER_VERIFY_KEY or LEDGER_SIGNING_KEY).")
        raise AssertionError("abort returned")
    with services().uow(snapshot=True) as db:
        report = ledger.verify(db, verifier=verifier)
    return report.as_dict()
