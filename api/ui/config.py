"""`/api/v1/ui/config`: the sign-in methods and payment rails the web UI offers; the development sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint, abort

from api.auth.tokens import issue_token
from api.ratelimit import rate_limit
from api.services import services
from runtime.settings import Settings

RAILS = ("stripe", "paypal", "crypto")
DEV_TTL_S = 12 * 3600
blp = Blueprint("ui-config", __name__, url_prefix="/api/v1", description="What the web UI offers")


def dev_sign_in_enabled(settings: Settings) -> bool:
    """Only outside production and only on the embedded default secret (runtime/local.py wrote it)."""
    if settings.CREDITFLOW_ENV == "production" or not settings.AUTH_JWT_SECRET:
        return False
    embedded = Path(settings.VAR_DIR) / "jwt_secret"
    return embedded.is_file() and embedded.read_text().strip() == settings.AUTH_JWT_SECRET


class RailSchema(ma.Schema):
    """A payment rail and whether it is configured here."""

    rail = ma.fields.String(required=True)
    enabled = ma.fields.Boolean(required=True)


class UiConfigSchema(ma.Schema):
    """Sign-in methods and rails."""

    dev_sign_in = ma.fields.Boolean(required=True)
    siwe = ma.fields.Boolean(required=True)
    oidc_issuers = ma.fields.List(ma.fields.String(), required=True)
    rails = ma.fields.List(ma.fields.Nested(RailSchema), required=True)


class DevSignInSchema(ma.Schema):
    """Who to sign in as (development only)."""

    name = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[A-Za-z0-9_.-]{1,40}$"))
    admin = ma.fields.Boolean(load_default=False)


class DevTokenSchema(ma.Schema):
    """A creditflow JWT for `Authorization: Bearer`."""

    token = ma.fields.String(required=True)
    sub = ma.fields.String(required=True)


@blp.route("/ui/config", methods=["GET"])
@blp.doc(security=[])
@blp.response(200, UiConfigSchema)
def ui_config() -> dict[str, Any]:
    """What the web UI may offer: sign-in methods and each payment rail's state."""
    settings = services().settings
    return {
        "dev_sign_in": dev_sign_in_enabled(settings),
        "siwe": bool(settings.AUTH_JWT_SECRET),
        "oidc_issuers": [issuer.issuer for issuer in settings.OIDC_ISSUERS],
        "rails": [{"rail": rail, "enabled": not settings.payment_rail_missing(rail)} for rail in RAILS],
    }


@blp.route("/auth/dev/sign-in", methods=["POST"])
@rate_limit("auth")
@blp.doc(security=[])
@blp.arguments(DevSignInSchema)
@blp.response(200, DevTokenSchema)
def dev_sign_in(body: dict[str, Any]) -> dict[str, Any]:
    """A token for `dev:<name>` (404 unless on the embedded default secret, outside production)."""
    settings = services().settings
    if not dev_sign_in_enabled(settings):
        abort(404, message="Development sign-in is not available here.")
    sub = f"dev:{body['name']}"
    roles = ("admin",) if body["admin"] else ()
    return {"token": issue_token(settings, sub=sub, roles=roles, ttl_s=DEV_TTL_S), "sub": sub}
