"""User accounts: created once with the welcome grant; balances read from the cached row."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select

from ledger import canonical, chart, sql
from ledger.errors import AccountNotFound
from ledger.idempotency import upsert_ignore
from ledger.lots import grant
from ledger.models import WELCOME_GRANT, Account, Balance
from ledger.sql import Executor
from ledger.tables import accounts, entries

_ACCOUNT_COLUMNS = (
    accounts.c.id, accounts.c.user_id, accounts.c.posted, accounts.c.held, accounts.c.debt,
    accounts.c.promo, accounts.c.seq,
)


def _load(session: sql.Executor, user_id: str) -> Account | None:
    row = session.execute(select(*_ACCOUNT_COLUMNS).where(accounts.c.user_id == user_id)).one_or_none()
    return None if row is None else Account(*row)


def ensure_user_account(session: Executor, *, user_id: str, now: datetime | None = None) -> Account:
    """The user's account, created with the 1000-credit welcome grant exactly once, even racing."""
    existing = _load(session, user_id)
    if existing is not None:
        return existing
    now = now or datetime.now(UTC)
    statement = upsert_ignore(session, accounts).values(
        code=f"user:{user_id}", kind="user", user_id=user_id, head=canonical.ZERO_HASH, created_at=now
    )
    # A racing creator blocks here until the first commits, then inserts nothing.
    created = session.execute(statement.returning(accounts.c.id)).first() is not None
    if created:
        grant(
            session, user_id=user_id, amount=WELCOME_GRANT, reason="welcome",
            idempotency_key=f"welcome:{user_id}", now=now,
        )
    account = _load(session, user_id)
    assert account is not None
    return Account(**{**account.__dict__, "created": created})


def account(session: sql.Executor, *, user_id: str) -> Account:
    """The user's account with cached balances; AccountNotFound if there is none."""
    found = _load(session, user_id)
    if found is None:
        raise AccountNotFound(user_id)
    return found


# Built once: a statement rebuilt per call costs more client CPU than the indexed read itself.
_BALANCE = select(accounts.c.posted, accounts.c.held).where(accounts.c.user_id == bindparam("user_id"))


def balance(session: sql.Executor, *, user_id: str) -> Balance:
    """(posted, held, available) in micro-credits, from the cached row (one indexed read)."""
    connection = sql.connection(session)
    if connection.dialect.name == "postgresql":
        row = sql.pg_one(connection, _BALANCE, {"user_id": user_id})
    else:
        row = connection.execute(_BALANCE, {"user_id": user_id}).one_or_none()
    if row is None:
        raise AccountNotFound(user_id)
    return Balance(row.posted, row.held, row.posted - row.held)


def system_balances(session: Executor) -> dict[str, int]:
    """Derived posted balances of the system accounts (sums over entries; not for the hot path)."""
    posted = ~entries.c.kind.in_(sorted(chart.PENDING_KINDS))
    totals = dict.fromkeys(chart.SYSTEM_ACCOUNTS.values(), 0)
    for column, sign in ((entries.c.credit_account_id, 1), (entries.c.debit_account_id, -1)):
        rows = session.execute(select(column, func.sum(entries.c.amount)).where(posted).group_by(column))
        for account_id, total in rows:
            if account_id in totals:
                totals[account_id] += sign * int(total)
    return {name: totals[account_id] for name, account_id in chart.SYSTEM_ACCOUNTS.items()}
