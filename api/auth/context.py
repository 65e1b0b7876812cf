"""The authenticated caller of a request (`g.auth`) and the decorators that require one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Literal, NoReturn, TypeVar, cast

from flask import current_app, g, request
from flask_smorest import Blueprint, abort

from api.auth.cache import TokenCache, UserCache
from api.auth.policy import enforce
from api.auth.principal import AuthError, Principal
from api.auth.tokens import verify_bearer
from api.metrics import count_welcome
from api.services import services
from orchestration.accounts.api_keys import authenticate_key
from orchestration.accounts.users import get_user, sign_in
from orchestration.accounts.welcome import Signup

F = TypeVar("F", bound=Callable[..., Any])
BEARER_DOC: list[dict[str, list[str]]] = [{"bearerAuth": []}]
ADMIN_ROLE = "admin"
AUDITOR_ROLE = "auditor"


@dataclass(frozen=True)
class AuthContext:
    """Who is calling: the user, how they authenticated, and an API key's daily limit (micro-credits)."""

    user_id: str
    external_id: str
    email: str | None
    is_admin: bool
    method: Literal["jwt", "oidc", "api_key"]
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    is_auditor: bool = False  # reads every admin view, changes nothing

    @property
    def role(self) -> str:
        """The strongest operator role of the caller: admin, auditor or user."""
        return ADMIN_ROLE if self.is_admin else AUDITOR_ROLE if self.is_auditor else "user"


def bearer_principal() -> Principal | None:
    """The verified principal of this request's bearer credential (memoized); raises AuthError."""
    if "auth_principal" not in g:
        g.auth_principal, g.auth_error = None, None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header and (scheme.lower() != "bearer" or not token.strip()):
            g.auth_error = AuthError("Use `Authorization: Bearer <token>`.")
        elif header:
            try:
                g.auth_principal = _verified(token.strip())
            except AuthError as exc:
                g.auth_error = exc
    if g.auth_error is not None:
        raise g.auth_error
    return cast(Principal | None, g.auth_principal)


def _cache(name: str, factory: Callable[[], Any]) -> Any:
    found = current_app.extensions.get(name)
    return found if found is not None else current_app.extensions.setdefault(name, factory())


def _verified(token: str) -> Principal:
    cache: TokenCache = _cache("creditflow_tokens", TokenCache)
    principal = cache.get(token, time.time())
    if principal is None:
        principal = verify_bearer(token, services().settings)
        cache.put(token, principal)
    return principal


def rate_limit_key() -> str:
    """The caller's rate-limit bucket: its principal when the credential verifies, else its IP."""
    try:
        principal = bearer_principal()
    except AuthError:
        principal = None
    return principal.rate_key if principal else "ip:" + (request.remote_addr or "unknown")


def _unauthorized(detail: str, status: int = 401) -> NoReturn:
    headers = {"WWW-Authenticate": 'Bearer realm="creditflow"'} if status == 401 else {}
    abort(status, message=detail, kind="unauthorized" if status == 401 else None, headers=headers)
    raise AssertionError("abort returned")


def authenticate() -> AuthContext:
    """Resolve this request's caller (creating the user on first sight) or answer 401."""
    if "auth" in g:
        return cast(AuthContext, g.auth)
    try:
        principal = bearer_principal()
    except AuthError as exc:
        _unauthorized(str(exc), exc.status)
    if principal is None:
        _unauthorized("This endpoint needs `Authorization: Bearer <token>`.")
    g.auth = _resolve(principal)
    enforce(g.auth.method)  # what this kind of credential may do: api/auth/policy.py
    return cast(AuthContext, g.auth)


def _resolve(principal: Principal) -> AuthContext:
    if principal.kind == "api_key":
        return _resolve_key(principal)
    assert principal.external_id is not None
    cache: UserCache = _cache("creditflow_users", UserCache)
    user = cache.get(principal.external_id)
    if user is None:
        # remote_addr is the client's own address: ProxyFix takes X-Forwarded-For only from TRUSTED_PROXIES.
        signup = Signup(principal.provider, request.remote_addr)
        signed_in = sign_in(
            services(), external_id=principal.external_id, email=principal.email, signup=signup
        )
        if signed_in.welcome is not None:
            count_welcome(signed_in.welcome)
        user = signed_in.user
        cache.put(user)  # only once committed
    settings = services().settings
    jwt_roles = principal.roles if principal.kind == "jwt" else frozenset()
    admin = ADMIN_ROLE in jwt_roles or user.external_id in settings.admin_subjects
    auditor = AUDITOR_ROLE in jwt_roles or user.external_id in settings.auditor_subjects
    return AuthContext(user.id, user.external_id, user.email, admin, principal.kind, is_auditor=auditor)


def _resolve_key(principal: Principal) -> AuthContext:
    # Never cached: a revoked key must stop working at once.
    with services().uow() as session:
        key = authenticate_key(session, secret=principal.secret or "")
        user = get_user(session, user_id=key.user_id) if key else None
    if key is None or user is None:
        _unauthorized("The API key is unknown or revoked.")
    return AuthContext(
        user.id, user.external_id, user.email, False, "api_key", key.id, key.daily_credit_limit
    )


def current_auth() -> AuthContext:
    """The caller of this request; only valid inside a view guarded by `auth_required`."""
    return authenticate()


def current_user_id() -> str:
    """The calling user's opaque id."""
    return authenticate().user_id


def _guard(func: F, check: Callable[[AuthContext], None]) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(authenticate())
        return func(*args, **kwargs)

    return cast(F, Blueprint.doc(security=BEARER_DOC)(wrapper))


def _any(_ctx: AuthContext) -> None:
    return None


def _admin(ctx: AuthContext) -> None:
    if not ctx.is_admin:
        abort(403, message="This needs the admin role.")


def _reader(ctx: AuthContext) -> None:
    if not (ctx.is_admin or ctx.is_auditor):
        abort(403, message="This needs the admin or auditor role.")


def auth_required(func: F) -> F:
    """Require any valid credential (JWT, OIDC token or API key); sets `g.auth`."""
    return _guard(func, _any)


def admin_required(func: F) -> F:
    """Require an admin: `roles: ["admin"]` in a creditflow JWT, or a subject in ADMIN_SUBJECTS."""
    return _guard(func, _admin)


def admin_read_required(func: F) -> F:
    """Require an admin or an auditor (`roles: ["auditor"]`, or a subject in AUDITOR_SUBJECTS): reads only."""
    return _guard(func, _reader)
