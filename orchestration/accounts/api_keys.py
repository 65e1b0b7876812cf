"""API keys: shown once, stored as a SHA-256 hash, listed by prefix, revocable, with a daily credit limit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    String,
    Table,
    and_,
    case,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Row

from runtime.db import Base

KEY_PREFIX = "cf_"
SHOWN_PREFIX_LENGTH = 11  # "cf_" and 8 characters: enough to tell keys apart, useless to an attacker
TOUCH_EVERY = timedelta(minutes=1)

api_keys = Table(
    "api_keys",
    Base.metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("daily_credit_limit", BigInteger),
    Column("spent_day", String(10)),
    Column("spent_today", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_keys_user_created", "user_id", "created_at"),
)


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed: never the key itself. Limits are micro-credits per UTC day."""

    id: str
    user_id: str
    name: str
    prefix: str
    daily_credit_limit: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        row.id, row.user_id, row.name, row.prefix, row.daily_credit_limit,
        _utc(row.created_at) or row.created_at, _utc(row.last_used_at), _utc(row.revoked_at),
    )


def hash_key(secret: str) -> str:
    """The stored form of a key: SHA-256 hex (the key has 256 bits of entropy, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    """True for strings shaped like a creditflow API key (as opposed to a JWT)."""
    return token.startswith(KEY_PREFIX) and "." not in token


def create_key(
    session: Connection, *, user_id: str, name: str, daily_credit_limit: int | None = None
) -> tuple[ApiKey, str]:
    """Make a key for the user; return it and the secret, which is never stored or shown again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    key = ApiKey("key_" + secrets.token_hex(10), user_id, name, secret[:SHOWN_PREFIX_LENGTH],
                 daily_credit_limit, now, None, None)
    session.execute(
        insert(api_keys).values(
            id=key.id, user_id=user_id, name=name, prefix=key.prefix, key_hash=hash_key(secret),
            daily_credit_limit=daily_credit_limit, created_at=now,
        )
    )
    return key, secret


def list_keys(
    session: Connection, *, user_id: str, limit: int, after: tuple[datetime, str] | None = None
) -> list[ApiKey]:
    """The user's live keys, newest first, after the (created_at, id) of a previous page."""
    query = select(api_keys).where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
    if after is not None:
        created, key_id = after
        older = api_keys.c.created_at < created
        query = query.where(or_(older, and_(api_keys.c.created_at == created, api_keys.c.id < key_id)))
    query = query.order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc()).limit(limit)
    return [_key(row) for row in session.execute(query)]


def revoke_key(session: Connection, *, user_id: str, key_id: str) -> bool:
    """Revoke one of the user's keys; False if the user has no such key (someone else's included)."""
    row = session.execute(
        select(api_keys.c.revoked_at).where(api_keys.c.id == key_id, api_keys.c.user_id == user_id)
    ).first()
    if row is None:
        return False
    if row.revoked_at is None:
        session.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=datetime.now(UTC)))
    return True


def authenticate_key(session: Connection, *, secret: str) -> ApiKey | None:
    """The live key matching `secret` (compared in constant time), touching its last use."""
    digest = hash_key(secret)
    row = session.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    now = datetime.now(UTC)
    last = _utc(row.last_used_at)
    if last is None or now - last > TOUCH_EVERY:
        session.execute(update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=now))
    return _key(row)


def reserve_daily_allowance(
    session: Connection, *, key_id: str, amount: int, today: date | None = None
) -> bool:
    """Count `amount` micro-credits against the key's daily limit; False (nothing counted) if over it.

    Call it in the transaction that places the hold: one conditional UPDATE, safe under concurrency.
    """
    day = (today or datetime.now(UTC).date()).isoformat()
    spent = case((api_keys.c.spent_day == day, api_keys.c.spent_today), else_=0)
    result = session.execute(
        update(api_keys)
        .where(
            api_keys.c.id == key_id,
            or_(api_keys.c.daily_credit_limit.is_(None), spent + amount <= api_keys.c.daily_credit_limit),
        )
        .values(spent_today=spent + amount, spent_day=day)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def return_daily_allowance(
    session: Connection, *, key_id: str, amount: int, today: date | None = None
) -> None:
    """Give back what a released hold did not spend (only if it was counted today)."""
    day = (today or datetime.now(UTC).date()).isoformat()
    session.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.spent_day == day)
        .values(spent_today=case((api_keys.c.spent_today > amount, api_keys.c.spent_today - amount), else_=0))
    )
