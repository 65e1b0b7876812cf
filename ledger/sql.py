"""The hot-path SQL: one statement per operation on PostgreSQL (CTEs), a short sequence on SQLite.

Every balance change is a single conditional UPDATE of the user's account row that also advances
the per-account hash chain (`ledger_link`, computed in SQL so the head never leaves the row lock).
"""

# S608: the statements below are assembled once, at import, from constant fragments; every value
# is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any, TypeAlias, cast

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import ClauseElement, Connection, DateTime, TextClause, bindparam, text
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.orm import Session

from ledger import canonical

_TIMESTAMP = DateTime(timezone=True)

# Two-phase operations run on a Session or straight on a Connection (no ORM unit of work, which is
# a good part of a short ledger transaction's client CPU); both execute Core statements alike.
Executor: TypeAlias = Session | Connection


def _sql(statement: str) -> TextClause:
    """A text() statement whose timestamp parameters bind as DateTime (same storage form as Core)."""
    clause = text(statement)
    typed = [bindparam(name, type_=_TIMESTAMP) for name in ("now", "expires_at") if f":{name}" in statement]
    return clause.bindparams(*typed) if typed else clause


_ACCOUNT_SET = """
    posted = posted + :dp,
    held = held + {dh},
    debt = debt + :dd,
    promo = CASE WHEN promo - :spend <= 0 THEN 0
                 WHEN promo - :spend > posted + :dp THEN posted + :dp
                 ELSE promo - :spend END,
    seq = seq + 1,
    head = ledger_link(head, id, seq + 1, posted + :dp, held + {dh}, debt + :dd, :body)
"""
_ENTRY_COLUMNS = """(account_id, seq, kind, debit_account_id, credit_account_id, amount, hold_id, lot_id,
    reference, idempotency_key, created_at, posted_after, held_after, debt_after, hash)"""
_PG_ENTRY_SELECT = """
    SELECT a.id, a.seq, CAST(:kind AS VARCHAR), {debit}, {credit}, CAST(:amount AS BIGINT),
           CAST(:hold_id AS VARCHAR), CAST(:lot_id AS BIGINT), CAST(:reference AS VARCHAR),
           CAST(:key AS VARCHAR), CAST(:now AS TIMESTAMPTZ), a.posted, a.held, a.debt, a.head
    FROM a
"""

# --- PostgreSQL: one round trip per operation -------------------------------------------------

PG_POST = _sql(f"""
WITH a AS (
    UPDATE ledger_accounts SET {_ACCOUNT_SET.format(dh=":dh")}
    WHERE id = :account_id AND posted + :dp >= held + :dh
    RETURNING id, seq, posted, held, debt, head
)
INSERT INTO ledger_entries {_ENTRY_COLUMNS}
{_PG_ENTRY_SELECT.format(debit="CAST(:debit AS BIGINT)", credit="CAST(:credit AS BIGINT)")}
RETURNING id, seq, posted_after, held_after, debt_after, hash
""")

PG_HOLD = _sql(f"""
WITH h AS (
    INSERT INTO ledger_holds (id, account_id, amount, status, captured, expires_at, reference,
                              idempotency_key, created_at)
    SELECT CAST(:hold_id AS VARCHAR), acc.id, CAST(:amount AS BIGINT), 'pending', 0,
           CAST(:expires_at AS TIMESTAMPTZ), CAST(:reference AS VARCHAR), CAST(:key AS VARCHAR),
           CAST(:now AS TIMESTAMPTZ)
    FROM ledger_accounts acc WHERE acc.user_id = :user_id
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id AS new_hold_id, account_id
), a AS (
    UPDATE ledger_accounts SET {_ACCOUNT_SET.format(dh=":dh")}
    FROM h WHERE ledger_accounts.id = h.account_id AND posted + :dp >= held + :dh
    RETURNING ledger_accounts.id, seq, posted, held, debt, head
), e AS (
    INSERT INTO ledger_entries {_ENTRY_COLUMNS}
    {_PG_ENTRY_SELECT.format(debit="a.id", credit="CAST(:credit AS BIGINT)")}
    RETURNING id
)
SELECT h.account_id, e.id AS entry_id FROM h LEFT JOIN e ON true
""")

PG_CAPTURE = _sql(f"""
WITH h AS (
    UPDATE ledger_holds SET status = 'captured', captured = :amount, resolve_key = :key,
                            resolved_at = :now
    WHERE id = :hold_id AND status = 'pending' AND amount >= :amount
    RETURNING account_id, amount AS hold_amount
), a AS (
    UPDATE ledger_accounts SET {_ACCOUNT_SET.format(dh="-h.hold_amount")}
    FROM h WHERE ledger_accounts.id = h.account_id
    RETURNING ledger_accounts.id, seq, posted, held, debt, head, h.hold_amount
), e AS (
    INSERT INTO ledger_entries {_ENTRY_COLUMNS}
    {_PG_ENTRY_SELECT.format(debit="a.id", credit="CAST(:credit AS BIGINT)")}
    RETURNING id
)
SELECT a.hold_amount, a.posted, a.held, a.head AS entry_hash, e.id AS entry_id FROM a JOIN e ON true
""")

# --- SQLite (and the pieces of the above, run one after another) --------------------------------

ACCOUNT_UPDATE = _sql(f"""
UPDATE ledger_accounts SET {_ACCOUNT_SET.format(dh=":dh")}
WHERE id = :account_id AND posted + :dp >= held + :dh
RETURNING id, seq, posted, held, debt, head
""")

ENTRY_INSERT = _sql(f"""
INSERT INTO ledger_entries {_ENTRY_COLUMNS}
VALUES (:account_id, :seq, :kind, :debit, :credit, :amount, :hold_id, :lot_id, :reference, :key, :now,
        :posted, :held, :debt, :hash)
RETURNING id
""")

HOLD_INSERT = _sql("""
INSERT INTO ledger_holds (id, account_id, amount, status, captured, expires_at, reference,
                          idempotency_key, created_at)
SELECT :hold_id, acc.id, :amount, 'pending', 0, :expires_at, :reference, :key, :now
FROM ledger_accounts acc WHERE acc.user_id = :user_id
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING account_id
""")

HOLD_CAPTURE = _sql("""
UPDATE ledger_holds SET status = 'captured', captured = :amount, resolve_key = :key, resolved_at = :now
WHERE id = :hold_id AND status = 'pending' AND amount >= :amount
RETURNING account_id, amount
""")

HOLD_RELEASE = _sql("""
UPDATE ledger_holds SET status = :status, resolve_key = :key, resolved_at = :now
WHERE id = :hold_id AND status = 'pending'
RETURNING account_id, amount
""")

HOLD_DELETE = text("DELETE FROM ledger_holds WHERE id = :hold_id")


def _sqlite_link(  # noqa: PLR0917 - mirrors the SQL function's signature
    prev: bytes, account_id: int, seq: int, posted: int, held: int, debt: int, body: bytes
) -> bytes:
    return canonical.link(prev, account_id, seq, posted, held, debt, body)


def connection(session: Executor) -> Connection:
    """The session's connection (Core execution skips ORM overhead on the hot path).

    On SQLite, registers the `ledger_link` function on the DBAPI connection once.
    """
    connection = session if isinstance(session, Connection) else session.connection()
    if connection.dialect.name == "sqlite":
        proxied = connection.connection
        if "ledger_link" not in proxied.info:
            raw = proxied.dbapi_connection
            assert raw is not None
            raw.create_function("ledger_link", 7, _sqlite_link, deterministic=True)
            proxied.info["ledger_link"] = True
    return connection


_PG_COMPILED: dict[int, str] = {}


def pg_one(connection: Connection, statement: ClauseElement, params: dict[str, Any]) -> Any:
    """Run one of the PG_* hot-path statements on the raw psycopg cursor; its first row or None.

    The statement is compiled once and runs inside the connection's transaction (begun here if
    none is, as SQLAlchemy's autobegin would). A driver error goes through SQLAlchemy's own
    handling: it comes out as the `sqlalchemy.exc` type (`IntegrityError`, `OperationalError`, ...)
    and a dead connection invalidates the pool, so one failure, not one per pooled connection.
    """
    # Why not `connection.exec_driver_sql`: its execution context and result object cost 30-40 us
    # of client CPU per statement (the balance read: 59-63 us raw, 83-91 us exec_driver_sql; a
    # hold: 93-97 us raw, 130-137 us). bench/ledger.py, 1000 accounts, three interleaved runs on the
    # shared 2-core machine at load 5-8 (2026-12-01): 0.58-0.66 ms of client CPU per hold+capture
    # pair on the raw path before this function handled errors, 0.61-0.63 ms with it, 0.69-0.76 ms
    # through exec_driver_sql (its "no raw path" row); pairs/s were too noisy at that load to rank
    # (502-755 raw, 607-748 exec_driver_sql). Errors are rare: only they pay for SQLAlchemy's handling.
    compiled = _PG_COMPILED.get(id(statement))
    if compiled is None:
        compiled = _PG_COMPILED[id(statement)] = str(statement.compile(dialect=connection.dialect))
    if connection.get_transaction() is None:
        connection.begin()  # else a plain Connection's commit() would have nothing to commit
    raw = cast(psycopg.Connection[Any], connection.connection.dbapi_connection)
    cursor = raw.cursor(row_factory=namedtuple_row)
    try:
        cursor.execute(compiled, params)
        return cursor.fetchone()
    except psycopg.Error as error:
        # SQLAlchemy's own translation (what execute() runs on a driver error): wraps the error in
        # its DBAPIError subclass, runs handle_error events, and on a disconnect invalidates this
        # connection and the whole pool. A private method: tests/integration/ledger/test_raw_path.py
        # fails if a SQLAlchemy upgrade changes it.
        connection._handle_dbapi_exception(error, compiled, params, cast(DBAPICursor, cursor), None)
    finally:
        cursor.close()


def dialect(session: Executor) -> str:
    """The session's dialect name (after connection() prepared it)."""
    return connection(session).dialect.name
