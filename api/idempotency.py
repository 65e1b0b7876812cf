"""`Idempotency-Key` for POSTs that create jobs or move money: replay the first answer, 409 otherwise."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, current_app, g, request
from flask_smorest import Blueprint, abort

from api.auth.context import authenticate
from api.dry_run import dry_run_requested
from api.services import services
from orchestration.accounts import idempotency

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Location",)
MAX_KEY_LENGTH = 200
PARAMETER_DOC = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": "Retry-safe key: the same key and body replays the first answer; another body is 409.",
    # Printable ASCII; no space at either end, where HTTP would strip it.
    "schema": {
        "type": "string",
        "pattern": f"^[\\x21-\\x7e]([\\x20-\\x7e]{{0,{MAX_KEY_LENGTH - 2}}}[\\x21-\\x7e])?$",
    },
}


def current_idempotency_key() -> str | None:
    """This request's Idempotency-Key, for passing down to the ledger as a client key."""
    return cast(str | None, g.get("idempotency_key"))


def fingerprint() -> str:
    """A hash of what makes two requests "the same": method, path, query and JSON body."""
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode() if raw else b""
    except ValueError:
        body = raw
    head = f"{request.method} {request.path}?{request.query_string.decode('latin-1')}\n".encode()
    return hashlib.sha256(head + body).hexdigest()


def _key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        abort(400, message=f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
              kind="bad-idempotency-key")
    return key


def _replay(claim: idempotency.Claim) -> Response:
    response = Response(claim.body or "", status=claim.status_code or 200, content_type=claim.content_type)
    for name, value in (claim.headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent(func: F) -> F:
    """Honour Idempotency-Key on this POST; put it under `auth_required`, above `blp.arguments`.

    A returned answer below 500 is stored and replayed for the same key and body; an error raised by the
    view (validation, abort, crash) or a 5xx releases the key so the client can retry it.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = _key()
        if key is None or dry_run_requested():  # a dry run moves nothing: no key to claim or replay
            return func(*args, **kwargs)
        user_id = authenticate().user_id
        ttl = timedelta(seconds=services().settings.IDEMPOTENCY_TTL_S)
        with services().uow() as session:
            claim = idempotency.claim(session, user_id=user_id, key=key, fingerprint=fingerprint(), ttl=ttl)
        if claim.outcome == "conflict":
            abort(409, message=f"This {HEADER} was used with a different request.",
                  kind="idempotency-key-reused")
        if claim.outcome == "in_flight":
            abort(409, message=f"A request with this {HEADER} is still being processed; retry shortly.",
                  kind="idempotency-request-in-flight", headers={"Retry-After": "1"})
        if claim.outcome == "replay":
            return _replay(claim)
        record_id = cast(int, claim.record_id)
        g.idempotency_key = key
        try:
            response = current_app.make_response(func(*args, **kwargs))
        except BaseException:
            with services().uow() as session:
                idempotency.release(session, record_id=record_id)
            raise
        with services().uow() as session:
            if response.status_code >= 500 or response.is_streamed:
                idempotency.release(session, record_id=record_id)
            else:
                headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
                idempotency.complete(
                    session, record_id=record_id, status_code=response.status_code,
                    content_type=response.content_type, headers=headers, body=response.get_data(as_text=True),
                )
        return response

    return cast(F, Blueprint.doc(parameters=[PARAMETER_DOC])(wrapper))
