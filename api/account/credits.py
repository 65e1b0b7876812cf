"""`/api/v1/credits`: balance, transaction history and inclusion proofs of the caller's entries."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint, abort
from sqlalchemy import select

import ledger
from api.account.me import BalanceSchema, balance_dict
from api.auth import auth_required, current_auth
from api.money import Credits
from api.pagination import PageArgsSchema, decode_position_cursor, encode_cursor, page_schema
from api.services import ledger_verifier, services
from ledger.tables import entries

JOB_HOLD_PREFIX = "job:"
ENTRY_ID = re.compile("[0-9]{1,18}")
blp = Blueprint("credits", __name__, url_prefix="/api/v1/credits", description="Balance and ledger history")


class TransactionSchema(ma.Schema):
    """One ledger entry of the caller's account; `amount` is negative for spending."""

    id = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    amount = Credits(required=True, metadata={"description": "Change of posted credits"})
    held = Credits(required=True, metadata={"description": "Change of held credits"})
    balance_after = Credits(required=True)
    available_after = Credits(required=True)
    job_id = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)
    hash = ma.fields.String(required=True)
    sealed = ma.fields.Boolean(required=True)


TransactionPageSchema = page_schema(TransactionSchema, "TransactionPageSchema")


class ProofSchema(ma.Schema):
    """An inclusion proof, checkable offline with the ledger's public key (ledger.verify_proof)."""

    entry = ma.fields.Dict(required=True)
    prev_hash = ma.fields.String(required=True)
    entry_hash = ma.fields.String(required=True)
    leaf_index = ma.fields.Integer(required=True)
    tree_size = ma.fields.Integer(required=True)
    audit_path = ma.fields.List(ma.fields.String(), required=True)
    checkpoint = ma.fields.Dict(required=True)
    public_key = ma.fields.String(allow_none=True, metadata={"description": "Ed25519 PEM (null for HMAC)"})


@blp.route("/balance", methods=["GET"])
@auth_required
@blp.response(200, BalanceSchema)
def balance() -> dict[str, int]:
    """The caller's balance: available, held, posted."""
    with services().uow(autocommit=True) as connection:
        return balance_dict(ledger.balance(connection, user_id=current_auth().user_id))


@blp.route("/transactions", methods=["GET"])
@auth_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, TransactionPageSchema)
def transactions(args: dict[str, Any]) -> dict[str, Any]:
    """The caller's ledger entries, newest first."""
    position = decode_position_cursor(args["cursor"])
    with services().uow() as session:
        found = ledger.transactions(
            session, user_id=current_auth().user_id, limit=args["limit"],
            cursor=None if position is None else str(position),
        )
    after = found["next_cursor"]
    items = [{**item, "job_id": job_of_hold(item["job_id"])} for item in found["items"]]
    return {"items": items, "next_cursor": encode_cursor([int(after)]) if after else None}


def job_of_hold(reference: str | None) -> str | None:
    """The job id in a hold's ledger reference: jobs place holds as `job:<id>` (orchestration.jobs.create)."""
    if reference is None or not reference.startswith(JOB_HOLD_PREFIX):
        return None
    return reference.removeprefix(JOB_HOLD_PREFIX)


@blp.route("/transactions/<entry_id>/proof", methods=["GET"])
@auth_required
@blp.response(200, ProofSchema)
def proof(entry_id: str) -> dict[str, Any]:
    """The inclusion proof of one of the caller's entries in a signed checkpoint (409 until sealed)."""
    if not ENTRY_ID.fullmatch(entry_id):  # str.isdigit() takes "¹", which int() refuses
        abort(404, message="Not found.")
    with services().uow() as session:
        account = ledger.account(session, user_id=current_auth().user_id)
        owner = session.execute(select(entries.c.account_id).where(entries.c.id == int(entry_id))).scalar()
        if owner != account.id:  # someone else's entry, or none: the same 404 either way
            abort(404, message="Not found.")
        found = ledger.proof(session, entry_id=int(entry_id))
    verifier = ledger_verifier()
    found["public_key"] = verifier.public_key_pem() if verifier else None
    return found
