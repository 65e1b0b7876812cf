"""Shared fixtures: throw-away databases on every configured backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.support.databases import backends, fresh_database


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per backend (SQLite, and PostgreSQL when configured)."""
    return str(request.param)


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, migrated database of the current backend."""
    with fresh_database(backend, tmp_path) as db:
        yield db
