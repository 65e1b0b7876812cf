"""Checked string types of settings (runtime/settings.py): each refuses a bad value with a reason."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

MIN_JWT_SECRET_BYTES = 32
MIN_FLOWER_PASSWORD = 12
MIN_METRICS_TOKEN = 24
PROVIDER_KINDS = ("creditflow", "siwe", "oidc")
AUTHORITY = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def _jwt_secret(value: str) -> str:
    # HS256 with a short secret falls to an offline guess from one token (RFC 7518 3.2: >= 256 bits).
    if value and len(value.encode()) < MIN_JWT_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return value


def _origin(value: str) -> str:
    if not value:
        return value
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (
        parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
        or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc
    ):
        raise ValueError("an origin such as https://credits.example.com (scheme, host, optional port)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _authority(value: str) -> str:
    if value and not AUTHORITY.match(value):
        raise ValueError("a host with an optional port, such as app.example.com (no scheme, no path)")
    return value.lower()


def _providers(value: str) -> str:
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        if entry not in PROVIDER_KINDS and not entry.startswith(("https://", "http://")):
            known = ", ".join(PROVIDER_KINDS)
            raise ValueError(f"{entry!r} is not a provider: use {known} or an OIDC issuer URL")
    return value


def _verify_key(value: str) -> str:
    if value and not (value.startswith("hmac:") or "BEGIN PUBLIC KEY" in value):
        raise ValueError("an Ed25519 public key (PEM) or hmac:<secret>, never a private key")
    return value


def _logins(value: str) -> str:
    for pair in value.split(",") if value else []:
        user, sep, password = pair.partition(":")
        if not (user and sep and len(password) >= MIN_FLOWER_PASSWORD):
            raise ValueError(
                f"user:password pairs (comma-separated), passwords of {MIN_FLOWER_PASSWORD}+ characters"
            )
    return value


def _networks(value: str) -> str:
    for part in value.split(","):
        if part.strip():
            ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad network
    return value


def _token(value: str) -> str:
    if value and len(value) < MIN_METRICS_TOKEN:
        raise ValueError(f"a bearer token of {MIN_METRICS_TOKEN}+ characters (or empty)")
    return value


JwtSecret = Annotated[str, AfterValidator(_jwt_secret)]
"""An HS256 secret of at least 32 bytes (or empty: not configured)."""
Origin = Annotated[str, AfterValidator(_origin)]
"""scheme://host[:port], normalised to lower case (or empty)."""
Authority = Annotated[str, AfterValidator(_authority)]
"""host[:port], no scheme or path, in lower case (or empty)."""
ProviderList = Annotated[str, AfterValidator(_providers)]
"""Comma-separated identity providers: creditflow, siwe, oidc, or OIDC issuer URLs."""
VerifyKey = Annotated[str, AfterValidator(_verify_key)]
"""A checkpoint verification key: an Ed25519 public PEM or hmac:<secret> (or empty)."""
BasicAuthLogins = Annotated[str, AfterValidator(_logins)]
"""Flower's logins: comma-separated user:password pairs (or empty)."""
NetworkList = Annotated[str, AfterValidator(_networks)]
"""Comma-separated IP networks (CIDR or single addresses), or empty."""
MetricsToken = Annotated[str, AfterValidator(_token)]
"""A bearer token of 24+ characters, or empty."""
