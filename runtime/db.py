"""SQLAlchemy engines; created by bootstrap, never at import. Scopes are opened by orchestration/uow.py."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, MetaData, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The column types every room's tables share. SQLite only auto-increments an `INTEGER PRIMARY KEY`;
# PostgreSQL gets BIGINT identity columns.
Id = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base shared by every table, so Alembic sees one metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def partial_index(name: str, *columns: str, where: str) -> Index:
    """An index over the rows matching `where`, on PostgreSQL and SQLite alike (both support them)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


def _sqlite_begin_immediate(engine: Engine) -> None:
    # pysqlite's deferred BEGIN lets two writers read, then both fail with SQLITE_BUSY on
    # write; BEGIN IMMEDIATE takes the write lock up front so busy_timeout can queue them.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite (BEGIN IMMEDIATE, WAL)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_begin_immediate(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )
    _ping_when_idle(engine)
    return engine


# A connection used within this many seconds is trusted as is: pinging on every checkout (SQLAlchemy's
# pool_pre_ping) costs a round trip per transaction. A connection that dies while warm fails one
# statement, and SQLAlchemy then invalidates the whole pool, so the next checkouts reconnect: after
# a server restart one call fails, not one per pooled connection (the ledger's raw psycopg path too,
# since ledger.sql.pg_one hands driver errors to SQLAlchemy). Idle ones are pinged and replaced
# unseen. tests/integration/ledger/test_raw_path.py restarts a private server to check both.
IDLE_PING_AFTER_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("pooled connection died while idle") from exc
        if not alive:
            raise DisconnectionError("pooled connection died while idle")  # the pool reconnects


def single_statement_engine(engine: Engine) -> Engine:
    """The engine's pool in autocommit mode on PostgreSQL; SQLite keeps its BEGIN IMMEDIATE transactions."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine
