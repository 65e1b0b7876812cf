"""Authentication: who is calling (`current_auth()`), and decorators that require a caller."""

from api.auth.context import (
    AuthContext,
    admin_read_required,
    admin_required,
    auth_required,
    current_auth,
    current_user_id,
    rate_limit_key,
)
from api.auth.principal import AuthError, Principal
from api.auth.tokens import JWT_ISSUER, issue_token, verify_bearer

__all__ = [
    "JWT_ISSUER",
    "AuthContext",
    "AuthError",
    "Principal",
    "admin_read_required",
    "admin_required",
    "auth_required",
    "current_auth",
    "current_user_id",
    "issue_token",
    "rate_limit_key",
    "verify_bearer",
]
