"""Bearer credentials -> a Principal: creditflow HS256 JWTs, OIDC ID tokens, API keys. No database here."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt

from api.auth.oidc import verify_oidc
from api.auth.principal import AuthError, AuthUnavailable, Principal
from orchestration.accounts.api_keys import looks_like_key
from runtime.settings import Settings

JWT_ISSUER = "creditflow"
BUILTIN_ALGORITHMS = ["HS256"]
# A creditflow JWT's `idp` claim names the provider that proved the identity (only "siwe" so far);
# signed with our secret, so only creditflow itself can set it.
PROVIDER_CLAIM = "idp"
SIWE_PROVIDER = "siwe"


def issue_token(
    settings: Settings,
    *,
    sub: str,
    email: str | None = None,
    roles: Iterable[str] = (),
    ttl_s: int | None = None,
    provider: str | None = None,
) -> str:
    """A creditflow JWT (HS256, issuer `creditflow`) for `sub`; `provider` names who proved it (e.g. siwe)."""
    now = int(time.time())
    exp = now + (ttl_s or settings.AUTH_TOKEN_TTL_S)
    claims: dict[str, Any] = {"iss": JWT_ISSUER, "sub": sub, "iat": now, "exp": exp}
    if email:
        claims["email"] = email
    if roles:
        claims["roles"] = sorted(roles)
    if provider:
        claims[PROVIDER_CLAIM] = provider
    return jwt.encode(claims, settings.AUTH_JWT_SECRET, algorithm="HS256")


def verify_bearer(token: str, settings: Settings) -> Principal:
    """Check a bearer credential's form, signature and claims; raise AuthError if anything is off."""
    if looks_like_key(token):
        return Principal("api_key", "api-key", secret=token)
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError("The bearer token is not a JWT or API key.") from None
    if str(header.get("alg", "none")).lower() == "none":
        raise AuthError("Unsigned tokens are not accepted.")
    issuer = unverified.get("iss")
    if issuer == JWT_ISSUER:
        return _builtin(token, settings)
    for config in settings.OIDC_ISSUERS:
        if issuer == config.issuer:
            try:
                claims = verify_oidc(token, config, leeway=settings.AUTH_LEEWAY_S)
            except ConnectionError:
                raise AuthUnavailable("The token issuer's keys cannot be fetched right now.") from None
            except jwt.PyJWTError as exc:
                raise AuthError(_reason(exc)) from None
            email = claims.get("email") if claims.get("email_verified", True) is not False else None
            valid_from, valid_until = _window(claims, settings)
            return Principal(
                "oidc", config.issuer, f"{config.issuer}#{_subject(claims)}", _text(email), frozenset(),
                valid_from=valid_from, valid_until=valid_until, provider=config.issuer,
            )
    raise AuthError("The token's issuer is not accepted.")


def _builtin(token: str, settings: Settings) -> Principal:
    if not settings.AUTH_JWT_SECRET:
        raise AuthError("creditflow tokens are not enabled (AUTH_JWT_SECRET is empty).")
    try:
        claims = jwt.decode(
            token,
            settings.AUTH_JWT_SECRET,
            algorithms=BUILTIN_ALGORITHMS,
            issuer=JWT_ISSUER,
            leeway=settings.AUTH_LEEWAY_S,
            options={"require": ["exp", "iss", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(_reason(exc)) from None
    roles = claims.get("roles")
    role_set = frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()
    valid_from, valid_until = _window(claims, settings)
    provider = SIWE_PROVIDER if claims.get(PROVIDER_CLAIM) == SIWE_PROVIDER else JWT_ISSUER
    return Principal(
        "jwt", JWT_ISSUER, _subject(claims), _text(claims.get("email")), role_set,
        valid_from=valid_from, valid_until=valid_until, provider=provider,
    )


def _window(claims: dict[str, Any], settings: Settings) -> tuple[float, float]:
    """(valid from, valid until) in epoch seconds with the leeway, for caching the verification."""
    leeway = settings.AUTH_LEEWAY_S
    start = max(float(claims.get("nbf", 0)), float(claims.get("iat", 0)))
    return (start - leeway if start else 0.0), float(claims["exp"]) + leeway


def _subject(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > 200:
        raise AuthError("The token's subject is missing or invalid.")
    return sub


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 320 else None


def _reason(exc: jwt.PyJWTError) -> str:
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "The token has expired."),
        (jwt.ImmatureSignatureError, "The token is not valid yet."),
        (jwt.InvalidAudienceError, "The token's audience is not accepted."),
        (jwt.InvalidIssuerError, "The token's issuer is not accepted."),
        (jwt.MissingRequiredClaimError, "The token lacks a required claim."),
        (jwt.InvalidAlgorithmError, "The token's algorithm is not accepted."),
        (jwt.InvalidSignatureError, "The token's signature does not verify."),
    ]
    for kind, text in reasons:
        if isinstance(exc, kind):
            return text
    return "The token is invalid."
