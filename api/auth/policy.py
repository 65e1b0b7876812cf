"""What each kind of credential may do, decided here for every route (README, "What a credential may do").

A user's token (a creditflow JWT, an OIDC ID token, a SIWE sign-in) may do everything of that user's.
An API key is a spending credential handed to IDE tools and OpenAI clients: it spends credits within
its own limits and reads, and nothing else: no payments, auto top-up, API keys, webhooks or
preferences. A route not listed here is closed to API keys, so a new route that moves money or
changes a setting is safe until someone decides otherwise, here.
"""

from __future__ import annotations

from flask import request
from flask_smorest import abort

READS = frozenset({"GET", "HEAD", "OPTIONS"})
EVERYTHING = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})

# Blueprint name -> the methods an API key may call on it.
API_KEY_MAY: dict[str, frozenset[str]] = {
    "jobs": EVERYTHING,  # jobs of every kind: create (within the key's limits), follow, cancel
    "chat": EVERYTHING,  # models, conversations and their messages
    "agents": EVERYTHING,  # agent tasks
    "vision": EVERYTHING,  # vision analyses (jobs, within the key's limits)
    "images": EVERYTHING,  # image generations (within the key's limits) and the images they made
    "openai": EVERYTHING,  # the OpenAI-compatible API
    "credits": READS,  # balance, transactions, proofs
    "me": READS,  # who am I (PATCH /me/preferences is a setting)
    "job-admin": READS,  # /me/events (the dead letters there need the admin role, which keys never have)
}


def api_key_may(blueprint: str | None, method: str) -> bool:
    """Whether an API key may call `method` on a route of `blueprint`."""
    return method.upper() in API_KEY_MAY.get(blueprint or "", frozenset())


def enforce(credential: str) -> None:
    """403 when this request's route is closed to the kind of credential that authenticated it."""
    if credential == "api_key" and not api_key_may(request.blueprint, request.method):
        abort(
            403,
            message="API keys spend credits and read; this needs a signed-in user's token "
            "(payments, auto top-up, API keys, webhooks and preferences are not open to API keys).",
            kind="api-key-not-allowed",
        )
