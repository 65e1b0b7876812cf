"""The composition root's services as seen from a request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import Connection

from orchestration.bootstrap import Services


def services() -> Services:
    """This app's services (settings, database, Redis), set by create_app."""
    return current_app.extensions["creditflow"]  # type: ignore[no-any-return]


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A connection for one read (see Services.read)."""
    with services().read() as connection:
        yield connection
