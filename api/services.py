"""The composition root's services as seen from a request."""

from __future__ import annotations

from flask import current_app

from ledger import Verifier
from orchestration.services import Services

VERIFIER = "creditflow_ledger_verifier"


def services() -> Services:
    """This app's services (settings, database, Redis), set by create_app."""
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]


def ledger_verifier() -> Verifier | None:
    """The checkpoint verifier (public key only for Ed25519); None when no ledger key is configured."""
    return current_app.extensions.get(VERIFIER)
