"""RFC 9457 problem+json for every error, including 404/405/422/500; never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, cast

import marshmallow as ma
import redis
import sqlalchemy.exc
from flask import Flask, Response, json
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://creditflow.dev/problems/"
# A store that does not answer now (PostgreSQL restarting, its pool dry for pool_timeout, a deadlock or
# serialization failure, Redis away): the request changed nothing that committed, so "try again" is the
# truth, not "the server has a bug". Each request's work is one transaction; money calls carry their
# Idempotency-Key, so a retry is safe.
UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    redis.ConnectionError,
    redis.TimeoutError,
)
UNAVAILABLE_RETRY_AFTER_S = 5


class ProblemSchema(ma.Schema):
    """An error answer: `{type, title, status, detail}` plus problem-specific fields."""

    type = ma.fields.String(metadata={"description": "URI naming the kind of problem"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(
        metadata={
            "description": "Validation problems: each body field (`_schema`: the body as a whole) maps to "
            "its messages; errors in the query string are nested under `query`, in headers under `headers`"
        }
    )


class ShortBalanceSchema(ProblemSchema):
    """A 402: the credits the request needs and what the balance (or a key's or the user's limit) allows."""

    available = ma.fields.String(metadata={"description": "Credits available, as decimal text"})
    required = ma.fields.String(metadata={"description": "Credits the request needs, as decimal text"})
    limit = ma.fields.String(
        metadata={"description": "The API key's daily limit, or the user's spending limit, as decimal text"}
    )
    period = ma.fields.String(metadata={"description": "The spending limit's period: day or month (UTC)"})
    spent = ma.fields.String(metadata={"description": "Credits counted against the limit this period"})


# `@blp.alt_response(402, description=..., **SHORT_BALANCE)`: every route that places a hold says so.
SHORT_BALANCE: dict[str, Any] = {"schema": ShortBalanceSchema, "content_type": PROBLEM_JSON}


def problem_document(status: int, detail: str, /, *, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON members of a problem: type, title, status, detail, then `extra` (never overriding those)."""
    title = _title(status)
    body = {"type": PROBLEM_BASE + (kind or _slug(title)), "title": title, "status": status, "detail": detail}
    body.update({name: value for name, value in extra.items() if name not in body})
    return body


def problem(status: int, detail: str, /, *, kind: str | None = None, **extra: Any) -> Response:
    """A problem+json response with the given status, detail and extra fields (never overriding those)."""
    body = problem_document(status, detail, kind=kind, **extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


def field_errors(messages: Any) -> dict[str, Any]:
    """webargs' messages as the documented `errors` object (a mapping, never a bare list).

    webargs nests them by location: a body's field map is shown as is, a message about the body
    as a whole (invalid JSON, a list where an object belongs) goes under `_schema`, as marshmallow does.
    """
    if not isinstance(messages, dict):
        return {"_schema": list(messages) if isinstance(messages, list | tuple) else [str(messages)]}
    body = messages.get("json", messages)
    return body if isinstance(body, dict) else {"_schema": body}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, answering errors as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """Document every error response as application/problem+json (what handlers send)."""
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_JSON
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE  # back to the class default for success answers

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Turn any HTTPException (abort, routing, validation) into problem+json."""
        if error.response is not None and error.response.mimetype == PROBLEM_JSON:
            # Already a problem (a view or hook built the whole answer itself).
            return cast(Response, error.response)
        data = getattr(error, "data", None) or {}
        extra: dict[str, Any] = {}
        errors = data.get("errors") or data.get("messages")
        if errors:
            extra["errors"] = field_errors(errors)
        extra.update(data.get("extra", {}))
        detail = data.get("message") or error.description or ""
        if error.code == 422 and errors and not data.get("message"):
            detail = "The request body or parameters are invalid; see `errors`."
        if error.code == 400 and errors and not data.get("message"):
            detail = "The request body is not valid JSON."  # webargs' only 400
        response = problem(error.code or 500, detail, kind=data.get("kind"), **extra)
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response


def register_error_handlers(app: Flask, api: ProblemApi) -> None:
    """Unhandled exceptions become a 500 problem without internals."""

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return api.handle_http_exception(exc)
        if isinstance(exc, UNAVAILABLE) or (
            isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated
        ):
            log.warning("a store did not answer: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])
            response = problem(503, "A service the API depends on is unavailable right now; retry shortly.")
            response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
            return response
        log.exception("unhandled error")
        return problem(500, InternalServerError.description)
