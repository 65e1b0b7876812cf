"""The admin audit log's table: append-only (a trigger refuses UPDATE and DELETE), one hash chain."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, LargeBinary, String, Table, Text

from runtime.db import Base, Id

audit_log = Table(
    "admin_audit",
    Base.metadata,
    Column("id", Id, primary_key=True),
    # 1, 2, 3...: a gap or a repeat is a removed or forged row, which verification names.
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("actor_id", String(100), nullable=False),
    Column("actor_role", String(20), nullable=False),
    Column("action", String(60), nullable=False),
    Column("target", String(200), nullable=False),
    Column("reason", String(200)),
    # Canonical JSON text (sorted keys, no spaces), hashed as stored: no re-serialisation to differ.
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)
