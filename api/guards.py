"""Checks at the door, before any view: body size, a body where one is documented, storable text.

Each refusal is a problem+json answer and nothing behind it runs.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from flask import Flask, request
from flask_smorest import abort

from api.errors import ProblemApi

# A JSON body's nesting is checked before anything parses it: with py_ecc's recursion limit (see
# api.app.RECURSION_LIMIT) json.loads of 100000 nested "[" overflowed the C stack and killed the worker
# process; with the default it raises RecursionError, which the body's parser does not catch (a 500).
MAX_JSON_DEPTH = 32
_BRACKETS_ONLY = bytes(set(range(256)) - set(b"[]{}"))
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# Escapes that decode to NUL or to a UTF-16 surrogate; only a body holding one is parsed here.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FLASK_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # /jobs/<job_id> -> /jobs/{job_id}, as in the spec
JSON_TYPES = ("application/json",)
DOOR_RULES = """Every error is `application/problem+json` (RFC 9457). Before any operation runs:

- a body over {max_body} bytes is refused with 413, whether it has a Content-Length or comes chunked;
- a request line over 4094 bytes is refused with 414, headers over gunicorn's limits with 431;
- NUL (raw or `\\u0000`, in the path, query or body) and a lone UTF-16 surrogate in a JSON string
  (like `\\ud800`) are refused with 422, as is JSON nested more than {max_depth} levels deep;
- an operation whose request body is required answers 422 without one and 415 when it is not JSON.

Besides what its schema says, a request may be refused for what it means: 402 (not enough credits),
409 (a conflict), 422 with a problem `type` naming the reason (an unknown model, a cursor this API
did not give out, ...), 429 (rate limits, open event streams).
"""


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def reject_oversized_body() -> None:
    """413 for a body over MAX_CONTENT_LENGTH, whether it says its length or comes chunked."""
    limit = request.max_content_length
    if limit is None:
        return
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413, message=f"The request body is larger than {limit} bytes.")
        return
    if _has_body():
        # Without Content-Length werkzeug reads at most `limit` bytes and quietly stops there (a cut
        # body then looked like invalid JSON): read it now and look one byte beyond.
        body = request.get_data(cache=True)
        if len(body) >= limit and request.environ["wsgi.input"].read(1):
            abort(413, message=f"The request body is larger than {limit} bytes.")


def reject_unstorable_text() -> None:
    """422 for NUL anywhere, a lone UTF-16 surrogate in a JSON string, or JSON nested too deeply.

    PostgreSQL text can hold neither NUL nor a lone surrogate (it is not UTF-8): refuse them at the
    door rather than fail deep in a query or, later, in a worker."""
    if "\x00" in request.path or b"%00" in request.query_string:
        _refuse_nul()
    body = request.get_data(cache=True) if _has_body() else b""
    if not body:
        return
    if b"\x00" in body:
        _refuse_nul()
    if _too_deep(body):
        abort(422, message=f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
              kind="json-too-deep")
    if _SUSPECT_ESCAPE.search(body) is None:
        return
    try:
        document = json.loads(body)
    except ValueError:
        return  # not JSON: the view's parser answers 400
    for text in _strings(document):
        if "\x00" in text:
            _refuse_nul()
        if _SURROGATE.search(text):
            abort(422, message="Text must be valid Unicode: a lone UTF-16 surrogate (like \\ud800) is not.",
                  kind="lone-surrogate")


def _refuse_nul() -> None:
    abort(422, message="NUL characters are not accepted.", kind="nul-character")


def _too_deep(body: bytes) -> bool:
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the common case, counted in C
    depth = 0
    for byte in _JSON_STRING.sub(b'""', body).translate(None, _BRACKETS_ONLY):
        depth += 1 if byte in b"[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def _strings(document: Any) -> list[str]:
    found: list[str] = []
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def body_required_by(api: ProblemApi) -> frozenset[tuple[str, str]]:
    """(path, METHOD) of every operation whose OpenAPI document says a JSON body is required."""
    required = set()
    for path, operations in api.spec.to_dict().get("paths", {}).items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body and body.get("required") and set(body.get("content", {})) & set(JSON_TYPES):
                required.add((path, method.upper()))
    return frozenset(required)


def require_documented_body(required: frozenset[tuple[str, str]]) -> Any:
    """A hook holding requests to their operation's documented body: 422 without one, 415 if not JSON."""

    def check() -> None:
        rule = request.url_rule
        if rule is None or (_spec_path(rule.rule), request.method) not in required:
            return
        if not _has_body():
            abort(422, message="This operation needs a JSON body; send {} to take every default.",
                  kind="body-required", errors={"_schema": ["Missing request body."]})
        if not request.is_json:  # application/json or application/*+json, as the body's parser reads
            abort(415, message="Send the body as application/json.", kind="unsupported-media-type")

    return check


@functools.lru_cache(maxsize=1024)
def _spec_path(rule: str) -> str:
    return _FLASK_VARIABLE.sub(r"{\1}", rule)


def register_guards(app: Flask, api: ProblemApi) -> None:
    """Run the door checks before every request (call after the blueprints are registered)."""
    rules = DOOR_RULES.format(max_body=app.config["MAX_CONTENT_LENGTH"], max_depth=MAX_JSON_DEPTH)
    api.spec.options.setdefault("info", {})["description"] = rules
    app.before_request(reject_oversized_body)
    app.before_request(reject_unstorable_text)
    app.before_request(require_documented_body(body_required_by(api)))
