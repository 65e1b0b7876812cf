"""The composition root's services as seen from a request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import Connection

from orchestration.bootstrap import Services
from runtime.db import single_statement_engine


def services() -> Services:
    """This app's services (settings, database, Redis), set by create_app."""
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A connection for one read: autocommit on PostgreSQL (no BEGIN/COMMIT round trips, no ORM).

    SQLite keeps a transaction (its BEGIN IMMEDIATE hook must be paired with an end)."""
    engine = services().engine
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            yield connection
        return
    with single_statement_engine(engine).connect() as connection:
        yield connection
