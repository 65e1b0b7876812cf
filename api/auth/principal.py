"""What a verified bearer credential says, and the errors verification raises."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal


class AuthError(Exception):
    """The credential is missing, malformed or invalid; the message is safe to show."""

    status = 401


class AuthUnavailable(AuthError):
    """The credential could not be checked right now (an issuer's keys are unreachable)."""

    status = 503


@dataclass(frozen=True)
class Principal:
    """Who a verified bearer credential names, before the database is consulted."""

    kind: Literal["jwt", "oidc", "api_key"]
    issuer: str
    external_id: str | None = None
    email: str | None = None
    roles: frozenset[str] = frozenset()
    valid_from: float = 0.0  # epoch seconds, leeway included (nbf / iat)
    valid_until: float = math.inf  # epoch seconds, leeway included (exp)
    secret: str | None = field(default=None, repr=False)  # API key material, for the lookup only
    # Who vouched for the identity, for the welcome-grant policy: "creditflow", "siwe" (a creditflow
    # JWT that /auth/siwe/verify issued) or the OIDC issuer's URL.
    provider: str = "creditflow"

    @property
    def rate_key(self) -> str:
        """The rate-limit bucket of this principal (an API key is a bucket of its own)."""
        if self.kind == "api_key":
            return "key:" + hashlib.sha256((self.secret or "").encode()).hexdigest()[:24]
        return "sub:" + (self.external_id or "")
