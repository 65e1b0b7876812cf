"""OpenID Connect ID tokens, verified against the issuer's JWKS (cached, refreshed on an unknown kid)."""

from __future__ import annotations

import threading
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from runtime.settings import OidcIssuer

JWKS_CACHE_S = 600
JWKS_TIMEOUT_S = 5

_clients: dict[tuple[str, float], PyJWKClient] = {}
_lock = threading.Lock()


def jwks_client(issuer: OidcIssuer) -> PyJWKClient:
    """The process-wide JWKS client of an issuer (keys are public: a per-process cache is safe)."""
    cache_key = (issuer.jwks_url, issuer.jwks_refresh_cooldown_s)
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            client = PyJWKClient(
                issuer.jwks_url,
                cache_keys=False,
                lifespan=JWKS_CACHE_S,
                timeout=JWKS_TIMEOUT_S,
                cooldown_duration=issuer.jwks_refresh_cooldown_s,
            )
            _clients[cache_key] = client
        return client


def verify_oidc(token: str, issuer: OidcIssuer, *, leeway: int) -> dict[str, Any]:
    """The verified claims of an ID token from `issuer`; raise jwt.PyJWTError, or ConnectionError."""
    header = jwt.get_unverified_header(token)
    if header.get("alg") not in issuer.algorithms:
        # Refuses HS256 tokens "signed" with the issuer's public key (algorithm confusion) and alg none.
        raise jwt.InvalidAlgorithmError("algorithm not allowed for this issuer")
    try:
        signing_key = jwks_client(issuer).get_signing_key_from_jwt(token)
    except PyJWKClientConnectionError as exc:
        raise ConnectionError(str(exc)) from None
    except PyJWKClientError:
        raise jwt.InvalidSignatureError("no key of the issuer matches the token") from None
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=issuer.algorithms,
        audience=issuer.audience,
        issuer=issuer.issuer,
        leeway=leeway,
        options={"require": ["exp", "iss", "sub", "aud"]},
    )
    return claims
