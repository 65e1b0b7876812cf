"""`?dry_run=true` on every job-creating POST: the same validation and quote, nothing held or created.

Routes pass `dry_run_requested()` into their command; job creation raises DryRunQuoted where the hold
would be placed (orchestration/jobs/create.py), and the handler registered here answers it 200 with the
quote. Idempotency-Key is ignored for a dry run (api/idempotency.py): it moves nothing to protect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, jsonify, request
from flask_smorest import Blueprint, abort

from api.money import credits_text
from orchestration.jobs.kinds import DryRunQuoted

F = TypeVar("F", bound=Callable[..., Any])
PARAMETER = "dry_run"
_VALUES = {"true": True, "1": True, "false": False, "0": False}
_ANSWER_SCHEMA = {
    "type": "object",
    "required": ["cost", "price_version", "details"],
    "properties": {
        "cost": {
            "type": "object",
            "properties": {
                "quoted": {"type": "string", "format": "decimal", "description": "credits it would hold"},
                "held": {"type": "string", "format": "decimal", "description": "always 0: nothing was held"},
            },
        },
        "price_version": {"type": "string"},
        "details": {"type": "object", "description": "what the quote was computed from (model, tokens...)"},
    },
}
_PARAMETER_DOC = {
    "in": "query",
    "name": PARAMETER,
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Validate and quote only: 200 with the cost; no job, hold or ledger entry.",
}
_RESPONSES_DOC = {
    "200": {
        "description": "Dry run: what the job would cost",
        "content": {"application/json": {"schema": _ANSWER_SCHEMA}},
    }
}


def dry_run_requested() -> bool:
    """Whether this request asks for a dry run (`?dry_run=true|false|1|0`; anything else is a 422)."""
    raw = request.args.get(PARAMETER)
    if raw is None:
        return False
    value = _VALUES.get(raw.strip().lower())
    if value is None:
        abort(
            422,
            message="dry_run must be true or false.",
            kind="bad-dry-run",
            errors={"query": {PARAMETER: ["Not a valid boolean."]}},
        )
    return bool(value)


def dry_runnable(func: F) -> F:
    """Document `?dry_run` and its 200 answer on a job-creating POST (the route passes the flag down).

    Put it above `idempotent` and every `blp.doc(parameters=...)`: a later doc's parameter list would
    replace this one's (flask-smorest merges dicts, not lists), so it appends to what they declared."""
    declared = getattr(func, "_apidoc", {}).get("manual_doc", {}).get("parameters", [])
    return cast(F, Blueprint.doc(parameters=[*declared, _PARAMETER_DOC], responses=_RESPONSES_DOC)(func))


def dry_run_answer(quote_error: DryRunQuoted) -> Response:
    """The 200 answer of a dry run: `{cost: {quoted, held: 0}, price_version, details}`."""
    quote = quote_error.quote
    details = {name: value for name, value in quote.details.items() if name != "amount"}
    return jsonify(
        cost={"quoted": credits_text(quote.amount), "held": credits_text(0)},
        price_version=quote.price_version,
        details=details,
        dry_run=True,
    )


def register_dry_run(app: Flask) -> None:
    """Answer DryRunQuoted, wherever job creation raised it, with the dry run's 200."""
    app.register_error_handler(DryRunQuoted, dry_run_answer)
