"""LangGraph checkpoint savers on the system of record: PostgreSQL, or a SQLite file beside the database."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sqlalchemy.engine import make_url

ADVISORY_LOCK = 726_151_001  # serializes the saver's own table setup across processes
_savers: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def sqlite_path(database_url: str) -> str:
    """The checkpoint file for a SQLite database: `<database>.checkpoints`."""
    database = make_url(database_url).database or "creditflow.db"
    return f"{database}.checkpoints"


def _postgres_saver(database_url: str) -> Any:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = Connection.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
    try:
        saver = PostgresSaver(connection)  # type: ignore[arg-type]
        saver.setup()
    finally:
        connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))
    return saver


def _sqlite_saver(database_url: str) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(sqlite_path(database_url), check_same_thread=False, timeout=30)
    saver = SqliteSaver(connection)
    saver.setup()
    return saver


def saver_for(database_url: str) -> Any:
    """This process's checkpoint saver for the database (built after fork, reused by every turn)."""
    key = (os.getpid(), database_url)
    with _lock:
        if key not in _savers:
            backend = make_url(database_url).get_backend_name()
            build = _postgres_saver if backend == "postgresql" else _sqlite_saver
            _savers[key] = build(database_url)
        return _savers[key]
