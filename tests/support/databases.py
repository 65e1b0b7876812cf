"""Throw-away databases for tests: a new PostgreSQL database or SQLite file, migrated."""

from __future__ import annotations

import atexit
import os
import sqlite3
import tempfile
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


# Migrating takes ~0.7 s on PostgreSQL and ~0.2 s on SQLite, and the suite makes hundreds of databases:
# each backend is migrated once per test process, and every fresh database is a copy of that one.
_templates: dict[str, str] = {}


def _sqlite_template() -> str:
    if "sqlite" not in _templates:
        path = Path(tempfile.gettempdir()) / f"cf_template_{uuid.uuid4().hex}.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        atexit.register(path.unlink, missing_ok=True)
        _templates["sqlite"] = str(path)
    return _templates["sqlite"]


def _postgres_template(admin: Engine, base: str) -> str:
    if "postgresql" not in _templates:
        name = f"cf_test_template_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(drivername="postgresql+psycopg", database=name)
        engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
        upgrade(engine)
        engine.dispose()  # a template takes no connections while it is copied
        atexit.register(_drop, base, name)
        _templates["postgresql"] = name
    return _templates["postgresql"]


def _drop(base: str, name: str) -> None:
    admin = _admin_engine(base)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def fresh_database(backend: str, tmp_dir: Path, *, pool_size: int = 10) -> Iterator[Engine]:
    """A brand-new migrated database on `backend` (a copy of one migrated per process), dropped afterwards."""
    if backend == "sqlite":
        path = tmp_dir / f"{uuid.uuid4().hex}.db"
        with sqlite3.connect(_sqlite_template()) as source, sqlite3.connect(path) as target:
            source.backup(target)
        source.close()
        target.close()
        engine = make_engine(f"sqlite:///{path}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    base = postgres_url()
    assert base, "PostgreSQL backend needs DATABASE_URL"
    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(base)
    template = _postgres_template(admin, base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = make_url(base).set(drivername="postgresql+psycopg", database=name)
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
