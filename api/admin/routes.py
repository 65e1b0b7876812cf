"""`/api/v1/admin`: credit grants, ledger verification (entries and the audit chain) and checkpoints."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint, abort

import ledger
from api.admin.schemas import CheckpointPageSchema
from api.auth import admin_read_required, admin_required, current_auth
from api.idempotency import current_idempotency_key, idempotent
from api.money import Credits
from api.pagination import PageArgsSchema, decode_position_cursor, page
from api.services import ledger_verifier, services
from orchestration.reports import admin, audit

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


class AuditVerifySchema(ma.Schema):
    """What verifying the audit log's chain found."""

    ok = ma.fields.Boolean(required=True)
    rows_checked = ma.fields.Integer(required=True)
    first_bad_seq = ma.fields.Integer(allow_none=True)
    problems = ma.fields.List(ma.fields.Dict())


class VerifySchema(ma.Schema):
    """What a full ledger verification found (`ok` covers the audit chain too)."""

    ok = ma.fields.Boolean(required=True)
    entries_checked = ma.fields.Integer(required=True)
    checkpoints_checked = ma.fields.Integer()
    first_bad_entry = ma.fields.String(allow_none=True)
    problems = ma.fields.List(ma.fields.Dict())
    seconds = ma.fields.Float()
    audit = ma.fields.Nested(AuditVerifySchema)


def actor() -> audit.Actor:
    """The calling admin as the audit log names them."""
    caller = current_auth()
    return audit.Actor(caller.user_id, caller.role)


def book(command: admin.Book) -> dict[str, Any]:
    """Book a grant or an adjustment as the calling admin; 404 for an unknown user."""
    try:
        return admin.book(services(), command, actor=actor())
    except admin.UserNotFound:
        abort(404, message="No such user.")
        raise


@blp.route("/grants", methods=["POST"])
@admin_required
@idempotent
@blp.arguments(GrantSchema)
@blp.response(201, GrantResultSchema)
def create_grant(args: dict[str, Any]) -> dict[str, Any]:
    """Grant credits to a user (send an Idempotency-Key: a retry then grants once); audited."""
    if args["expires_at"] is not None and args["expires_at"] <= datetime.now(UTC):
        # Not a matter of syntax, so not in the schema: a time the document can't call valid or not.
        abort(
            422,
            message="expires_at must be in the future.",
            kind="expiry-in-the-past",
            errors={"expires_at": ["Must be in the future."]},
        )
    key = current_idempotency_key()
    client_key = f"admin-grant:{current_auth().user_id}:{key or secrets.token_hex(16)}"
    booked = book(
        admin.Book("grant", args["user_id"], args["credits"], args["reason"], client_key, args["expires_at"])
    )
    return {**args, "id": booked["lot_id"], "entry_id": booked["entry_id"]}


@blp.route("/ledger/verify", methods=["GET"])
@admin_read_required
@blp.response(200, VerifySchema)
def verify() -> dict[str, Any]:
    """Recompute every hash, balance, checkpoint signature and the audit chain; name the first bad."""
    verifier = ledger_verifier()
    if verifier is None:
        abort(503, message="No ledger key is configured (LEDGER_VERIFY_KEY or LEDGER_SIGNING_KEY).")
        raise AssertionError("abort returned")
    with services().uow(snapshot=True) as db:
        return audit.verify_books(db, verifier=verifier)


@blp.route("/ledger/checkpoints")
class Checkpoints(MethodView):
    """The ledger's signed checkpoints."""

    @admin_read_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, CheckpointPageSchema)
    def get(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """Checkpoints newest first: number, size, Merkle root, chain hash, key id."""
        with services().uow(autocommit=True) as db:
            rows = ledger.list_checkpoints(db, limit=limit + 1, before=decode_position_cursor(cursor))
        return page(rows, limit=limit, position=lambda row: [row["number"]])
