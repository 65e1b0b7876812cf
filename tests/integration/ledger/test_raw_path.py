"""The raw psycopg hot path (`ledger.sql.pg_one`) behaves like SQLAlchemy's own execution.

Errors come out as `sqlalchemy.exc` types; a connection that died server-side (killed backends, a
server restart) costs one failed operation, after which the whole pool has reconnected; a plain
Connection's commit() commits what the raw cursor wrote. PostgreSQL only: SQLite has no raw path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker

import ledger
import ledger.holds
from runtime import db
from runtime.migrate import upgrade
from tests.integration.ledger.conftest import M, check_ledger, new_user
from tests.support.databases import fresh_database, postgres_url
from tests.support.postgres_server import PrivateServer, postgres_bindir, private_postgres

POOL = 4


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Engine]:
    """A fresh migrated database on the suite's PostgreSQL: only its own backends get killed."""
    if not postgres_url():
        pytest.skip("needs DATABASE_URL (PostgreSQL)")
    with fresh_database("postgresql", tmp_path, pool_size=POOL) as created:
        yield created


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=10)


def _warm(engine: Engine) -> set[int]:
    """Fill the pool with POOL connections that were just used; their backend pids."""
    held = [engine.connect() for _ in range(POOL)]
    pids = {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in held}
    for connection in held:
        connection.close()
    return pids


def _kill_backends(engine: Engine) -> int:
    """Terminate every other backend connected to this engine's database (and no other database)."""
    killer = db.make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with killer.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one())
    finally:
        killer.dispose()


def _operations(engine: Engine, user: str) -> list[tuple[str, Callable[[], None]]]:
    """Ledger calls the way the application makes them: a balance read on an autocommit connection
    (Services.statement), a hold in an ORM session, a hold and its capture on engine.begin()."""
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    single = db.single_statement_engine(engine)

    def balance() -> None:
        with single.connect() as connection:
            ledger.balance(connection, user_id=user)

    def hold() -> None:
        with sessions.begin() as session:
            ledger.hold(session, user_id=user, amount=M, expires_at=_later(), reference=None,
                        idempotency_key=uuid.uuid4().hex)

    def capture() -> None:
        with engine.begin() as connection:
            held = ledger.hold(connection, user_id=user, amount=2 * M, expires_at=_later(), reference=None,
                               idempotency_key=uuid.uuid4().hex)
            ledger.capture(connection, hold_id=held.id, amount=M, idempotency_key=uuid.uuid4().hex)

    return [("balance", balance), ("hold", hold), ("capture", capture)] * 4


def _failures(operations: list[tuple[str, Callable[[], None]]]) -> list[tuple[int, str, BaseException]]:
    failed: list[tuple[int, str, BaseException]] = []
    for index, (name, operation) in enumerate(operations):
        try:
            operation()
        except Exception as exc:
            failed.append((index, name, exc))
    return failed


def _assert_one_invalidating_failure(failed: list[tuple[int, str, BaseException]]) -> None:
    assert len(failed) == 1, [(index, name, repr(exc)) for index, name, exc in failed]
    index, _name, error = failed[0]
    assert index == 0  # the first call met a dead connection; every later one had a new connection
    assert isinstance(error, DBAPIError), repr(error)  # SQLAlchemy's type, not psycopg's
    assert error.connection_invalidated


def test_after_backends_are_killed_one_ledger_call_fails_then_all_succeed(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_AFTER_S", 3600.0)  # every pooled connection counts as warm
    sessions = sessionmaker(bind=pg, expire_on_commit=False)
    new_user(sessions, "alice", paid=100 * M)
    pids = _warm(pg)
    assert _kill_backends(pg) >= len(pids)
    failed = _failures(_operations(pg, "alice"))
    _assert_one_invalidating_failure(failed)
    with sessions() as session:
        balance = ledger.balance(session, user_id="alice")
    assert balance.held == 4 * M  # every `hold` call ran (the failure was a read); captures released theirs
    check_ledger(sessions, ledger.signer_from_key("hmac:raw-path-test-signing-key"))


def test_a_unique_violation_on_the_raw_path_is_sqlalchemys_integrity_error(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = sessionmaker(bind=pg, expire_on_commit=False)
    new_user(sessions, "bob", paid=10 * M)
    same_id = SimpleNamespace(hex="f" * 32)
    monkeypatch.setattr(ledger.holds, "uuid", SimpleNamespace(uuid4=lambda: same_id))  # hold ids collide
    with sessions.begin() as session:
        first = ledger.hold(session, user_id="bob", amount=M, expires_at=_later(), reference=None,
                            idempotency_key="first")
        with pytest.raises(IntegrityError) as raised, session.begin_nested():
            ledger.hold(session, user_id="bob", amount=M, expires_at=_later(), reference=None,
                        idempotency_key="second")
        assert isinstance(raised.value.orig, psycopg.errors.UniqueViolation)
        assert not raised.value.connection_invalidated
        after = ledger.balance(session, user_id="bob")  # the savepoint rolled back; the transaction lives
    assert after.held == M
    with sessions() as session:
        assert ledger.get_hold(session, hold_id=first.id).amount == M


def test_a_hold_on_a_plain_connection_is_kept_by_its_commit(pg: Engine) -> None:
    sessions = sessionmaker(bind=pg, expire_on_commit=False)
    new_user(sessions, "carol")
    with pg.connect() as connection:
        held = ledger.hold(connection, user_id="carol", amount=M, expires_at=_later(), reference=None,
                           idempotency_key="carol-1")  # the raw cursor is the first to use the connection
        connection.commit()
    with sessions() as session:
        assert ledger.get_hold(session, hold_id=held.id).status == "pending"
        assert ledger.balance(session, user_id="carol").held == M


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    """A private PostgreSQL cluster this module may restart."""
    if postgres_bindir() is None:
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl)")
    with private_postgres() as running:
        yield running


@pytest.fixture
def private(server: PrivateServer) -> Iterator[Engine]:
    """A migrated database on the private server."""
    name = f"cf_restart_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(server.url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = db.make_engine(make_url(server.url).set(database=name).render_as_string(), pool_size=POOL)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("idle_ping_after_s", [3600.0, 0.0], ids=["warm", "idle"])
def test_after_a_server_restart_the_pool_costs_at_most_one_failed_call(
    private: Engine, server: PrivateServer, monkeypatch: pytest.MonkeyPatch, idle_ping_after_s: float
) -> None:
    """Warm connections (not pinged): the first call fails and invalidates the whole pool. Idle
    ones: each is pinged on checkout and replaced, and no call fails."""
    monkeypatch.setattr(db, "IDLE_PING_AFTER_S", idle_ping_after_s)
    sessions = sessionmaker(bind=private, expire_on_commit=False)
    new_user(sessions, "dave", paid=100 * M)
    before = _warm(private)
    server.restart()
    failed = _failures(_operations(private, "dave"))
    if idle_ping_after_s:
        _assert_one_invalidating_failure(failed)
    else:
        assert failed == []
    assert _warm(private).isdisjoint(before)
    check_ledger(sessions, ledger.signer_from_key("hmac:raw-path-test-signing-key"))
