"""Pooled connections: a dead idle one is replaced unseen; single-statement sessions skip BEGIN/COMMIT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from runtime import db
from tests.support.databases import fresh_database, postgres_url


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill_pooled_connection(engine: Engine) -> int:
    """Check a connection in and out of `engine`'s pool, then kill its backend from outside; its pid."""
    pid = _backend_pid(engine)
    other = db.make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    with other.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    return pid


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh PostgreSQL database: only it has server-side connections to kill."""
    if not postgres_url():
        pytest.skip("needs DATABASE_URL (PostgreSQL)")
    with fresh_database("postgresql", tmp_path) as created:
        yield created


def test_an_idle_connection_that_died_is_replaced_before_use(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        first = _kill_pooled_connection(engine)
        monkeypatch.setattr(db, "IDLE_PING_AFTER_S", 0.0)  # every pooled connection counts as idle
        assert _backend_pid(engine) != first  # pinged, found dead, reconnected: no error reaches us
    finally:
        engine.dispose()


def test_a_warm_connection_that_died_fails_once_then_the_pool_reconnects(pg_engine: Engine) -> None:
    engine = db.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=2)
    try:
        first = _kill_pooled_connection(engine)
        with pytest.raises(OperationalError):
            _backend_pid(engine)  # used a moment ago: not pinged, the statement meets the dead socket
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def test_single_statement_connections_commit_each_statement_on_their_own(engine: Engine) -> None:
    single = db.single_statement_engine(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE pool_probe (id integer PRIMARY KEY)"))
    with single.begin() as connection:
        connection.execute(text("INSERT INTO pool_probe VALUES (1)"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM pool_probe")).scalar_one() == 1
    if engine.dialect.name == "postgresql":
        with single.connect() as connection:
            connection.execute(text("INSERT INTO pool_probe VALUES (2)"))
            connection.rollback()  # no transaction was open: the row is already committed
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM pool_probe")).scalar_one() == 2
