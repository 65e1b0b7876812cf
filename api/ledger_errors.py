"""Ledger refusals as problem+json: each ledger error class maps to one status and problem type."""

from __future__ import annotations

from flask import Flask, Response

from api.errors import problem
from api.money import credits_text
from ledger import (
    AccountNotFound,
    EntryNotFound,
    HoldAlreadyResolved,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    InvalidCursor,
    LedgerError,
    NotSealed,
)

STATUS: list[tuple[type[LedgerError], int]] = [
    (InsufficientCredits, 402),
    (AccountNotFound, 404),
    (EntryNotFound, 404),
    (HoldNotFound, 404),
    (IdempotencyConflict, 409),
    (HoldAlreadyResolved, 409),
    (NotSealed, 409),
    (InvalidAmount, 422),
    (InvalidCursor, 422),
]


def ledger_problem(exc: LedgerError) -> Response:
    """The problem answer for a ledger refusal (402 carries `available` and `required` as credits)."""
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 409)
    kind = exc.code.replace("_", "-")
    if isinstance(exc, InsufficientCredits):
        return problem(402, "Not enough credits available for this request.", kind=kind,
                       available=credits_text(exc.available), required=credits_text(exc.required))
    if status == 404:
        return problem(404, "Not found.", kind="not-found")
    return problem(status, str(exc), kind=kind)


def register_ledger_errors(app: Flask) -> None:
    """Answer any LedgerError a view lets escape as problem+json."""
    app.register_error_handler(LedgerError, ledger_problem)
