"""Agent checkpoints outlive their connections: killed backends, a server restart, many threads at once.

Each test runs on its own database (PostgreSQL: a fresh one, so killing its backends touches nothing
else).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy.engine import make_url

from assistant.checkpoints import close_savers, saver_for
from tests.support.databases import fresh_database, postgres_url
from tests.support.postgres_server import postgres_bindir, private_postgres

BOUND_S = 30  # no wait in these tests is unbounded; none needs more than a fraction of this


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database's URL; this process's savers are closed afterwards."""
    if not postgres_url():
        pytest.skip("needs DATABASE_URL (PostgreSQL)")
    with fresh_database("postgresql", tmp_path) as engine:
        try:
            yield engine.url.render_as_string(hide_password=False)
        finally:
            close_savers()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend (PostgreSQL when configured)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'checkpoints.db'}"
        close_savers()
    else:
        yield request.getfixturevalue("pg_url")


def _put(saver: Any, thread_id: str, value: int) -> Any:
    """Write a checkpoint holding `value` in a channel (a blob row, as chat turns write); its config."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"turns": [value]}
    checkpoint["channel_versions"] = {"turns": value}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return saver.put(config, checkpoint, {"source": "input", "step": value}, {"turns": value})


def _value(saver: Any, config: Any) -> int:
    stored = saver.get_tuple(config)
    assert stored is not None
    return int(stored.checkpoint["channel_values"]["turns"][0])


def _kill(database_url: str, application_name: str | None = None) -> int:
    """Terminate the other backends of this database (only this one), or only those of one application."""
    with psycopg.connect(_dsn(database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (%(name)s::text IS NULL OR application_name = %(name)s)",
            {"name": application_name},
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_checkpoints_are_read_and_written_again_after_their_connections_are_killed(pg_url: str) -> None:
    saver = saver_for(pg_url)
    first = _put(saver, "kill", 1)
    assert _value(saver, first) == 1
    assert _kill(pg_url) >= 1
    assert _value(saver, first) == 1  # the pool's check found the dead connection and replaced it
    for value in (2, 3):
        assert _value(saver, _put(saver, "kill", value)) == value
    latest = saver.get_tuple({"configurable": {"thread_id": "kill", "checkpoint_ns": ""}})
    assert latest is not None
    assert latest.checkpoint["channel_values"]["turns"] == [3]


def test_a_slow_checkpoint_read_does_not_hold_up_other_threads(pg_url: str) -> None:
    saver = saver_for(pg_url)
    stored = _put(saver, "reader", 7)
    listing = saver.list(None)
    next(listing)  # suspended inside the saver's operation: it keeps its connection until closed
    answered: list[int] = []
    other = threading.Thread(target=lambda: answered.append(_value(saver, stored)))
    try:
        other.start()
        other.join(timeout=BOUND_S)
        assert answered == [7], "a second thread waited on the first one's checkpoint operation"
    finally:
        listing.close()
        other.join(timeout=BOUND_S)


def test_many_threads_checkpoint_at_once_and_every_write_is_kept(any_url: str) -> None:
    saver = saver_for(any_url, pool_size=3)  # fewer connections than threads: they queue for them
    threads, writes = 24, 5
    written: dict[str, list[Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads, timeout=BOUND_S)

    def work(index: int) -> None:
        thread_id = f"t{index}-{uuid.uuid4().hex[:6]}"
        try:
            barrier.wait()
            written[thread_id] = [_put(saver, thread_id, value) for value in range(1, writes + 1)]
        except BaseException as exc:
            errors.append(exc)

    running = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=BOUND_S)
    assert not errors, errors
    assert len(written) == threads
    for thread_id, configs in written.items():
        assert [_value(saver, config) for config in configs] == list(range(1, writes + 1))
        listed = list(saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}))
        assert len(listed) == writes


@pytest.mark.slow
def test_checkpoints_work_again_after_a_server_restart() -> None:
    if postgres_bindir() is None:
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl)")
    with private_postgres() as server:
        url = make_url(server.url).set(database="postgres").render_as_string(hide_password=False)
        try:
            saver = saver_for(url)
            first = _put(saver, "restart", 1)
            server.restart()
            assert _value(saver, first) == 1
            assert _value(saver, _put(saver, "restart", 2)) == 2
        finally:
            close_savers()
