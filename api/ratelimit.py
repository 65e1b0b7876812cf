"""Rate limits (flask-limiter on Redis): per caller and per IP on every route, stricter named scopes."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit
from flask_smorest import abort
from limits import RateLimitItem, parse_many

from api.auth.context import rate_limit_key
from api.errors import problem
from runtime.settings import Settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
SCOPES = {"auth": "RATE_LIMIT_AUTH", "jobs": "RATE_LIMIT_JOBS"}
EXEMPT_BLUEPRINTS = ("ops", "api-docs")
KEY_PREFIX = "creditflow-rl"


def rate_limit(scope: str) -> Callable[[F], F]:
    """Mark a view with a stricter named limit ("auth": per IP, "jobs": per user), checked before it runs."""
    if scope not in SCOPES:
        raise ValueError(f"unknown rate-limit scope {scope!r}; known: {', '.join(SCOPES)}")

    def mark(func: F) -> F:
        func._rate_limit_scope = scope  # type: ignore[attr-defined]
        return func

    return mark


def ip_key() -> str:
    """The client's address (after ProxyFix when TRUSTED_PROXIES is set)."""
    return "ip:" + (request.remote_addr or "unknown")


def _signed_in() -> bool:
    """A verified JWT: its own bucket only. API keys (checked later, in the database) also count per IP."""
    return rate_limit_key().startswith("sub:")


def _anonymous() -> bool:
    return rate_limit_key().startswith("ip:")


def _retry_after(reset_at: float) -> str:
    return str(max(1, math.ceil(reset_at - time.time())))


def _too_many(limit: RequestLimit) -> Response:
    response = problem(429, f"Rate limit exceeded ({limit.limit}); retry later.", kind="rate-limited")
    response.headers["Retry-After"] = _retry_after(limit.reset_at)
    return response


def _scope_of(view: Any, method: str) -> str | None:
    scope = getattr(view, "_rate_limit_scope", None)
    view_class = getattr(view, "view_class", None)
    if scope is None and view_class is not None:
        scope = getattr(getattr(view_class, method.lower(), None), "_rate_limit_scope", None)
    return scope


def _check_scoped(limiter: Limiter, items: dict[str, list[RateLimitItem]]) -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    scope = _scope_of(view, request.method) if view else None
    if scope is None or request.blueprint in EXEMPT_BLUEPRINTS:
        return
    key = rate_limit_key()
    for item in items[scope]:
        try:
            allowed = limiter.limiter.hit(item, KEY_PREFIX, scope, key)
            reset_at = 0.0 if allowed else limiter.limiter.get_window_stats(item, KEY_PREFIX, scope, key)[0]
        except Exception:  # a Redis outage must not take the API down: limits fail open
            log.warning("rate limit storage unavailable; %s limit not applied", scope)
            return
        if not allowed:
            abort(429, message=f"Rate limit exceeded ({item}); retry later.", kind="rate-limited",
                  headers={"Retry-After": _retry_after(reset_at)})


def init_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Attach the limiter (call after every blueprint is registered); None when limits are off."""
    if not settings.RATE_LIMITS_ENABLED:
        return None
    limiter = Limiter(
        key_func=ip_key,
        # A signed-in caller counts against its own bucket only (one Redis round trip); anyone else (no,
        # bad or guessed credentials, API keys) against its address's too, so guessing is throttled.
        application_limits=[
            ApplicationLimit(settings.RATE_LIMIT_USER, key_function=rate_limit_key, scope="user",
                             exempt_when=_anonymous),
            ApplicationLimit(
                settings.RATE_LIMIT_IP, key_function=ip_key, scope="ip", exempt_when=_signed_in
            ),
        ],
        storage_uri=settings.REDIS_URL or "memory://",
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2},
        strategy="fixed-window",
        headers_enabled=False,
        swallow_errors=True,
        on_breach=_too_many,
        key_prefix=KEY_PREFIX,
    )
    limiter.init_app(app)
    for name in EXEMPT_BLUEPRINTS:
        if name in app.blueprints:
            limiter.exempt(cast(Blueprint, app.blueprints[name]))
    items = {scope: parse_many(getattr(settings, name)) for scope, name in SCOPES.items()}
    app.before_request(lambda: _check_scoped(limiter, items))
    app.extensions["creditflow_limiter"] = limiter
    return limiter
