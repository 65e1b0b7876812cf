"""Ledger tables (SQLAlchemy Core): accounts, holds, lots, entries, checkpoints, idempotency."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from runtime.db import Base, Id, Timestamp, partial_index

metadata = Base.metadata

accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(120), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("user_id", String(100), unique=True),
    Column("posted", BigInteger, nullable=False, server_default=text("0")),
    Column("held", BigInteger, nullable=False, server_default=text("0")),
    Column("debt", BigInteger, nullable=False, server_default=text("0")),
    Column("promo", BigInteger, nullable=False, server_default=text("0")),
    Column("seq", BigInteger, nullable=False, server_default=text("0")),
    Column("head", LargeBinary(32), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("kind IN ('user', 'system')", name="kind"),
    CheckConstraint("held >= 0", name="held_non_negative"),
    CheckConstraint("posted >= held", name="available_non_negative"),
    CheckConstraint("debt >= 0", name="debt_non_negative"),
    CheckConstraint("promo >= 0 AND promo <= posted", name="promo_within_posted"),
    CheckConstraint("seq >= 0", name="seq_non_negative"),
)

holds = Table(
    "ledger_holds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Id, ForeignKey("ledger_accounts.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("captured", BigInteger, nullable=False, server_default=text("0")),
    Column("expires_at", Timestamp, nullable=False),
    Column("reference", String(200)),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("resolve_key", String(200)),
    Column("created_at", Timestamp, nullable=False),
    Column("resolved_at", Timestamp),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
    CheckConstraint("status IN ('pending', 'captured', 'voided', 'expired')", name="status"),
    partial_index("ix_ledger_holds_pending_expiry", "expires_at", where="status = 'pending'"),
)

lots = Table(
    "ledger_lots",
    metadata,
    Column("id", Id, primary_key=True),
    Column("account_id", Id, ForeignKey("ledger_accounts.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", Timestamp),
    Column("reason", String(200), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
)

entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Id, primary_key=True),
    # No foreign keys: an FK check share-locks the referenced row on every insert; verify()
    # checks instead that every entry's accounts exist.
    Column("account_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("debit_account_id", Id, nullable=False),
    Column("credit_account_id", Id, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("hold_id", String(32)),
    Column("lot_id", Id),
    Column("reference", String(200)),
    Column("idempotency_key", String(200)),
    Column("created_at", Timestamp, nullable=False),
    Column("posted_after", BigInteger, nullable=False),
    Column("held_after", BigInteger, nullable=False),
    Column("debt_after", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    UniqueConstraint("account_id", "seq", name="uq_ledger_entries_account_seq"),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
    CheckConstraint("seq >= 1", name="seq_positive"),
)

# Filled by a trigger on every entry insert; seal() drains it. Rows from transactions that
# commit late simply show up for the next seal, so no entry is ever skipped.
unsealed = Table(
    "ledger_unsealed",
    metadata,
    Column("entry_id", BigInteger, primary_key=True, autoincrement=False),
)

checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("id", Id, primary_key=True),
    Column("number", BigInteger, nullable=False, unique=True),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("size > 0", name="size_positive"),
)

checkpoint_leaves = Table(
    "ledger_checkpoint_leaves",
    metadata,
    Column("entry_id", BigInteger, primary_key=True, autoincrement=False),
    Column("checkpoint_id", Id, ForeignKey("ledger_checkpoints.id"), nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    UniqueConstraint("checkpoint_id", "leaf_index", name="uq_ledger_checkpoint_leaves_position"),
)

operations = Table(
    "ledger_operations",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("operation", String(20), nullable=False),
    Column("request", Text, nullable=False),
    Column("result", Text),
    Column("created_at", Timestamp, nullable=False),
)
