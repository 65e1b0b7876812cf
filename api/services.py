"""The composition root's services as seen from a request."""

from __future__ import annotations

from flask import current_app

from orchestration.bootstrap import Services


def services() -> Services:
    """This app's services (settings, database, Redis), set by create_app."""
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]
