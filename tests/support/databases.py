"""Throw-away databases for tests: a new PostgreSQL database or SQLite file, migrated."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from runtime.db import make_engine
from runtime.migrate import upgrade


def postgres_url() -> str | None:
    """The PostgreSQL server given by DATABASE_URL, if the suite runs against one."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql", "postgres")) else None


def backends() -> list[str]:
    """Backends every ledger test runs on: SQLite always, PostgreSQL when configured."""
    return ["sqlite", "postgresql"] if postgres_url() else ["sqlite"]


def _admin_engine(base: str) -> Engine:
    url = make_url(base).set(drivername="postgresql+psycopg")
    return make_engine(url.render_as_string(hide_password=False)).execution_options(
        isolation_level="AUTOCOMMIT"
    )


@contextmanager
def fresh_database(backend: str, tmp_dir: Path, *, pool_size: int = 10) -> Iterator[Engine]:
    """A brand-new migrated database on `backend`, dropped afterwards."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_dir / f'{uuid.uuid4().hex}.db'}")
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    base = postgres_url()
    assert base, "PostgreSQL backend needs DATABASE_URL"
    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(drivername="postgresql+psycopg", database=name)
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=pool_size)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
