"""Rate limits on Redis: per caller and per IP on every route, stricter named scopes on some views.

Limits are written in the `limits` notation and counted in fixed windows on Redis (window_counter).
flask-limiter's per-request evaluation (decorator registry, exemptions, header bookkeeping) cost more
than the rest of a balance read put together, and we need none of it: which limits apply is decided
here, from the caller's credential, in one `before_request` hook.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from flask import Flask, current_app, request
from flask_smorest import abort
from limits import RateLimitItem, parse_many

from api.auth.context import rate_limit_key
from api.window_counter import WindowCounter
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


def _scope_of(view: Any, method: str) -> str | None:
    scope = getattr(view, "_rate_limit_scope", None)
    view_class = getattr(view, "view_class", None)
    if scope is None and view_class is not None:
        scope = getattr(getattr(view_class, method.lower(), None), "_rate_limit_scope", None)
    return scope


@dataclass(frozen=True)
class RateLimits:
    """The configured limits and the Redis-backed fixed-window counter they share."""

    counter: WindowCounter
    user: list[RateLimitItem]
    ip: list[RateLimitItem]
    scoped: dict[str, list[RateLimitItem]]

    def check(self) -> None:
        """Count this request against every limit that applies; 429 with Retry-After past one."""
        if request.blueprint in EXEMPT_BLUEPRINTS:
            return
        key = rate_limit_key()
        # A signed-in caller counts against its own bucket only (one round trip); a caller without a
        # valid credential against its address's; an API key (checked later, in the database) both.
        if not key.startswith("ip:"):
            self._hit(self.user, "user", key)
        if not key.startswith("sub:"):
            self._hit(self.ip, "ip", ip_key())
        view = current_app.view_functions.get(request.endpoint or "")
        scope = _scope_of(view, request.method) if view else None
        if scope is not None:
            self._hit(self.scoped[scope], scope, key)

    def _hit(self, items: list[RateLimitItem], scope: str, key: str) -> None:
        for item in items:
            try:
                wait = self.counter.hit(item, scope, key, time.time())
            except redis.RedisError:  # a Redis outage must not take the API down: limits fail open
                log.warning("rate limit storage unavailable; %s limit not applied", scope)
                return
            if wait is not None:
                abort(429, message=f"Rate limit exceeded ({item}); retry later.", kind="rate-limited",
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})


def init_rate_limits(app: Flask, settings: Settings) -> RateLimits | None:
    """Check limits before every request (call after the blueprints are registered); None when off."""
    if not settings.RATE_LIMITS_ENABLED:
        return None
    limits = RateLimits(
        counter=WindowCounter(app.extensions["creditflow"].redis, KEY_PREFIX),
        user=parse_many(settings.RATE_LIMIT_USER),
        ip=parse_many(settings.RATE_LIMIT_IP),
        scoped={scope: parse_many(getattr(settings, name)) for scope, name in SCOPES.items()},
    )
    app.before_request(limits.check)
    app.extensions["creditflow_rate_limits"] = limits
    return limits
