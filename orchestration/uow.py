"""The unit of work: the one way code opens a database scope, and where the lock order lives.

    with services.uow() as db: ...                      # one transaction, committed on success
    with services.uow(account_of=user_id) as db: ...    # a money transaction: see the lock order
    with services.uow(account_of_job=job_id) as db: ... # the same, for the owner of a job
    with services.uow(account=account_id) as db: ...    # the same, by ledger account id (sweeps)
    with services.uow(autocommit=True) as db: ...       # statements each atomic alone (reads, CAS)
    with services.uow(snapshot=True) as db: ...         # a read-only view of one instant (verify)

Each yields a plain SQLAlchemy `Connection` (Core statements; no ORM identity map to pay for).

Lock order, for every transaction that moves money or changes what money depends on (holds, jobs,
API-key allowances, lots, orders):
  1. the user's ledger account row, locked FOR UPDATE as the unit's first statement (`account_of`,
     `account_of_job`, `account`): it is the per-user mutex, so two money units of one user run one after the
     other and can never deadlock, whatever they touch next;
  2. then anything keyed by that user, in any order (their jobs, holds, lots, API keys, orders...).
A money transaction touches one user's account only (system accounts are never locked: their
balances are derived), and a sweep over many users (the reaper) runs one unit per item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy.exc
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.engine import Engine

from ledger.tables import accounts
from orchestration.accounts.spending import remember_limit, spending_limits
from orchestration.notify.tables import watches
from orchestration.notify.watch import forget, remember
from orchestration.tables import jobs

# Built once: the values are bound per call. SQLite ignores FOR UPDATE, but its BEGIN IMMEDIATE
# (runtime/db.py) already makes every transaction the only writer. The lock also reads what the user
# watches (orchestration/notify/watch.py) in the same round trip: a money move then decides whether it
# crossed a low-balance threshold, or ended a job someone's webhook waits for, by comparing numbers;
# and the user's spending limit (orchestration/accounts/spending.py), which a hold then checks.
_LOCKED = select(
    accounts.c.id,
    watches.c.floor,
    watches.c.ceiling,
    watches.c.events,
    spending_limits.c.credits.label("limit_credits"),
    spending_limits.c.period.label("limit_period"),
).select_from(
    accounts.outerjoin(watches, watches.c.user_id == accounts.c.user_id).outerjoin(
        spending_limits, spending_limits.c.user_id == accounts.c.user_id
    )
)
_LOCK_ACCOUNT = _LOCKED.where(accounts.c.user_id == bindparam("user_id")).with_for_update(of=accounts)
_LOCK_ACCOUNT_ID = _LOCKED.where(accounts.c.id == bindparam("account_id")).with_for_update(of=accounts)
_LOCK_ACCOUNT_OF_JOB = _LOCKED.where(
    accounts.c.user_id == select(jobs.c.user_id).where(jobs.c.id == bindparam("job_id")).scalar_subquery()
).with_for_update(of=accounts)


@contextmanager
def unit_of_work(
    engine: Engine,
    autocommit_engine: Engine,
    *,
    account_of: str | None = None,
    account_of_job: str | None = None,
    account: int | None = None,
    autocommit: bool = False,
    snapshot: bool = False,
    on_commit: Callable[[list[str]], None] | None = None,
) -> Iterator[Connection]:
    """A database scope: a transaction (locking one user's account first when asked), or autocommit."""
    if autocommit:
        if account_of or account_of_job or account is not None:
            raise ValueError("an autocommit unit holds no locks; a money unit is a transaction")
        if engine.dialect.name != "postgresql":
            # SQLite's BEGIN IMMEDIATE hook must be paired with an end: keep a short transaction.
            with engine.begin() as connection:
                yield connection
            return
        with autocommit_engine.connect() as connection:
            yield connection
        return
    if snapshot and engine.dialect.name == "postgresql":
        # REPEATABLE READ: every statement sees the same committed state (SQLite's writer lock does).
        with (
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection,
            connection.begin(),
        ):
            yield connection
        return
    with engine.begin() as connection:
        locked = None
        if account_of is not None:
            locked = connection.execute(_LOCK_ACCOUNT, {"user_id": account_of}).first()
        elif account_of_job is not None:
            locked = connection.execute(_LOCK_ACCOUNT_OF_JOB, {"job_id": account_of_job}).first()
        elif account is not None:
            locked = connection.execute(_LOCK_ACCOUNT_ID, {"account_id": account}).first()
        remember(connection, locked)  # also clears what an earlier unit on this connection left
        remember_limit(connection, locked)
        try:
            yield connection
        except BaseException:
            # A connection the server dropped (PostgreSQL restarting) was invalidated: its info went with
            # it, and reading it would raise PendingRollbackError in place of the error that says why.
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                forget(connection)
                remember_limit(connection, None)
            raise
        written = forget(connection)
        remember_limit(connection, None)
    if written and on_commit is not None:
        on_commit(written)
