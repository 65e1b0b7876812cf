"""`/api/v1/auth`: Sign-In With Ethereum (EIP-4361) -> a creditflow JWT for the wallet address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import marshmallow as ma
from flask_smorest import Blueprint, abort

from api.auth.siwe import SiweError, check_message, consume_nonce, issue_nonce, parse_message, recover_signer
from api.auth.tokens import SIWE_PROVIDER, issue_token
from api.ratelimit import rate_limit
from api.services import services

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-In With Ethereum")


class NonceSchema(ma.Schema):
    """A single-use nonce to put in the EIP-4361 message."""

    nonce = ma.fields.String(required=True)
    expires_at = ma.fields.AwareDateTime(required=True)


class SiweVerifySchema(ma.Schema):
    """The signed EIP-4361 message and its signature (0x-prefixed hex, 65 bytes)."""

    message = ma.fields.String(required=True, validate=ma.validate.Length(1, 4000))
    signature = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))


class TokenSchema(ma.Schema):
    """A creditflow JWT for `Authorization: Bearer`; `sub` is the checksummed address."""

    token = ma.fields.String(required=True)
    address = ma.fields.String(required=True)
    expires_at = ma.fields.AwareDateTime(required=True)


def _refuse(detail: str) -> NoReturn:
    abort(401, message=detail, kind="siwe-refused")
    raise AssertionError("abort returned")


@blp.route("/siwe/nonce", methods=["POST"])
@rate_limit("auth")
@blp.doc(security=[])
@blp.response(200, NonceSchema)
def siwe_nonce() -> dict[str, Any]:
    """A fresh nonce, valid once for SIWE_NONCE_TTL_S seconds."""
    settings = services().settings
    nonce = issue_nonce(services().redis, ttl_s=settings.SIWE_NONCE_TTL_S)
    return {"nonce": nonce, "expires_at": datetime.now(UTC) + timedelta(seconds=settings.SIWE_NONCE_TTL_S)}


@blp.route("/siwe/verify", methods=["POST"])
@rate_limit("auth")
@blp.doc(security=[])
@blp.arguments(SiweVerifySchema)
@blp.response(200, TokenSchema)
def siwe_verify(args: dict[str, Any]) -> dict[str, Any]:
    """Check the signed message (domain, chain, times, nonce) and answer a JWT for the signer."""
    settings = services().settings
    if not settings.AUTH_JWT_SECRET:
        abort(503, message="Sign-in is not configured (AUTH_JWT_SECRET is empty).")
    try:
        message = parse_message(args["message"])
        # The origin is configured (PUBLIC_URL / SIWE_DOMAIN), never the request's Host: see api/auth/siwe.py.
        check_message(
            message, origin=settings.siwe_origin, chain_ids=settings.siwe_chain_ids,
            leeway=timedelta(seconds=settings.AUTH_LEEWAY_S),
        )
        signer = recover_signer(args["message"], args["signature"])
    except SiweError as exc:
        _refuse(f"Sign-in refused: {exc}.")
    if signer != message.address:
        _refuse("Sign-in refused: the signature is not the message's address.")
    if not consume_nonce(services().redis, message.nonce):
        _refuse("Sign-in refused: the nonce is unknown, expired or already used.")
    ttl = settings.AUTH_TOKEN_TTL_S
    if message.expiration_time is not None:
        ttl = max(60, min(ttl, int((message.expiration_time - datetime.now(UTC)).total_seconds())))
    token = issue_token(settings, sub=message.address, ttl_s=ttl, provider=SIWE_PROVIDER)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    return {"token": token, "address": message.address, "expires_at": expires_at}
