"""LangGraph checkpoint savers on the system of record: PostgreSQL, or a SQLite file beside the database.

On PostgreSQL the saver draws a connection from a pool for each operation: a connection that died
(a server restart, a backend killed by an operator) fails the pool's check and is replaced, so chat
turns keep working without restarting the worker, and many threads checkpoint at once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import nullcontext
from typing import Any

from sqlalchemy.engine import make_url

ADVISORY_LOCK = 726_151_001  # serializes the saver's own table setup across processes
APPLICATION_NAME = "creditflow-checkpoints"  # how the pool's connections show in pg_stat_activity
_savers: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def sqlite_path(database_url: str) -> str:
    """The checkpoint file for a SQLite database: `<database>.checkpoints`."""
    database = make_url(database_url).database or "creditflow.db"
    return f"{database}.checkpoints"


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _setup_tables(dsn: str) -> None:
    """Create or migrate the saver's tables once, on a connection of its own (not one of the pool's)."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    with Connection.connect(
        dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row, application_name=APPLICATION_NAME
    ) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
        try:
            PostgresSaver(connection).setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))


def _postgres_saver(database_url: str, pool_size: int) -> Any:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import DictRow, dict_row
    from psycopg_pool import ConnectionPool

    dsn = _dsn(database_url)
    _setup_tables(dsn)
    pool: ConnectionPool[Connection[DictRow]] = ConnectionPool(
        dsn,
        connection_class=Connection[DictRow],
        # What PostgresSaver needs of a connection: autocommit, dict rows, statements prepared at once.
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "application_name": APPLICATION_NAME,
        },
        min_size=1,
        max_size=pool_size,
        # A round trip on every checkout (put + get_tuple: 0.57-0.59 ms of client CPU with it,
        # 0.49-0.50 without): a few per turn, nothing next to a model's reply, and a dead
        # connection is then replaced before a turn uses it, not after it failed the turn.
        check=ConnectionPool.check_connection,
        name=APPLICATION_NAME,
        open=True,
    )
    saver = PostgresSaver(pool)
    # PostgresSaver takes an instance-wide lock around every operation, which a single shared
    # connection needs; with a pool each operation has its own connection, and the lock would
    # serialize all of a process's turns (langgraph#7259 reports the same for the async saver).
    saver.lock = nullcontext()  # type: ignore[assignment]
    return saver


def _sqlite_saver(database_url: str) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(sqlite_path(database_url), check_same_thread=False, timeout=30)
    saver = SqliteSaver(connection)
    saver.setup()
    return saver


def _default_pool_size() -> int:
    from runtime.settings import get_settings

    return get_settings().CHECKPOINT_POOL_SIZE


def saver_for(database_url: str, *, pool_size: int | None = None) -> Any:
    """This process's checkpoint saver for the database (built after fork, shared by every thread).

    On PostgreSQL its pool holds up to `pool_size` connections (default: CHECKPOINT_POOL_SIZE).
    """
    key = (os.getpid(), database_url)
    with _lock:
        if key not in _savers:
            if make_url(database_url).get_backend_name() == "postgresql":
                _savers[key] = _postgres_saver(database_url, pool_size or _default_pool_size())
            else:
                _savers[key] = _sqlite_saver(database_url)
        return _savers[key]


def close_savers() -> None:
    """Close this process's savers and their connections (tests, process shutdown)."""
    with _lock:
        for key in [key for key in _savers if key[0] == os.getpid()]:
            saver = _savers.pop(key)
            saver.conn.close()
