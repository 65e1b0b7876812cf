"""Idempotency records: the first answer to (user, Idempotency-Key), replayed for the same request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from runtime.db import Base, Id, Timestamp

PENDING_TAKEOVER_AFTER = timedelta(minutes=2)  # a pending record this old belongs to a dead request

idempotency_records = Table(
    "idempotency_records",
    Base.metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(10), nullable=False),
    Column("status_code", Integer),
    Column("content_type", String(100)),
    Column("headers", JSON),
    Column("body", Text),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("user_id", "key", name="uq_idempotency_records_user_key"),
)


@dataclass(frozen=True)
class Claim:
    """What a claim found: `new` (go ahead), `replay` (a stored answer), `conflict` or `in_flight`."""

    outcome: Literal["new", "replay", "conflict", "in_flight"]
    record_id: int | None = None
    status_code: int | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None
    body: str | None = None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def claim(session: Connection, *, user_id: str, key: str, fingerprint: str, ttl: timedelta) -> Claim:
    """Claim `key` for a request with this fingerprint, or say why not; commit right after."""
    now = datetime.now(UTC)
    try:
        with session.begin_nested():
            result = session.execute(
                insert(idempotency_records).values(
                    user_id=user_id, key=key, fingerprint=fingerprint, state="pending", created_at=now
                )
            )
        key_row = result.inserted_primary_key
        assert key_row is not None
        return Claim("new", record_id=key_row[0])
    except IntegrityError:
        pass
    row = session.execute(
        select(idempotency_records).where(
            idempotency_records.c.user_id == user_id, idempotency_records.c.key == key
        )
    ).first()
    if row is None:  # released between our insert and this read: the client may simply retry
        return Claim("in_flight")
    created = _aware(row.created_at)
    stale = now - created > (PENDING_TAKEOVER_AFTER if row.state == "pending" else ttl)
    if stale and _take_over(
        session, row_id=row.id, created_at=row.created_at, fingerprint=fingerprint, now=now
    ):
        return Claim("new", record_id=row.id)
    if row.fingerprint != fingerprint:
        return Claim("conflict")
    if row.state == "pending":
        return Claim("in_flight")
    return Claim("replay", row.id, row.status_code, row.content_type, dict(row.headers or {}), row.body)


def _take_over(session: Connection, *, row_id: int, created_at: Any, fingerprint: str, now: datetime) -> bool:
    result = session.execute(
        update(idempotency_records)
        .where(idempotency_records.c.id == row_id, idempotency_records.c.created_at == created_at)
        .values(fingerprint=fingerprint, state="pending", created_at=now, status_code=None, body=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(
    session: Connection, *, record_id: int, status_code: int, content_type: str | None,
    headers: dict[str, str], body: str,
) -> None:
    """Store the answer given for a claimed key."""
    session.execute(
        update(idempotency_records)
        .where(idempotency_records.c.id == record_id)
        .values(state="done", status_code=status_code, content_type=content_type, headers=headers, body=body)
    )


def release(session: Connection, *, record_id: int) -> None:
    """Forget a claim whose request failed, so the client may retry with the same key."""
    session.execute(
        delete(idempotency_records).where(
            idempotency_records.c.id == record_id, idempotency_records.c.state == "pending"
        )
    )


def purge(session: Connection, *, older_than: datetime) -> int:
    """Delete finished records created before `older_than`; return how many."""
    result = session.execute(
        delete(idempotency_records).where(
            idempotency_records.c.state == "done", idempotency_records.c.created_at < older_than
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
