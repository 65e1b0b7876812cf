"""The composition root's services as seen from a request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy.orm import Session

from orchestration.bootstrap import Services
from runtime.db import transaction


def services() -> Services:
    """This app's services (settings, database, Redis), set by create_app."""
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]


@contextmanager
def read_session() -> Iterator[Session]:
    """A session for one consistent read: autocommit on PostgreSQL (no BEGIN/COMMIT round trips).

    SQLite keeps a normal transaction (its BEGIN IMMEDIATE hook must always be paired with a commit).
    """
    if services().engine.dialect.name != "postgresql":
        with transaction(services().sessions) as session:
            yield session
        return
    with services().single_statements() as session:
        yield session
