"""Tables of payments: orders (one per attempt), provider events, crypto transfers, auto top-up.

Provider amounts (cents, wei, token base units) are stored as decimal text: wei overflow a BIGINT and
SQLite has no exact wide numeric type. Credits are micro-credit BIGINTs like everywhere else.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from runtime.db import Base, Id, Timestamp, partial_index

RAILS = ("stripe", "paypal", "crypto")
ORDER_STATUSES = ("pending", "paid", "credited", "refunded", "disputed", "expired", "failed")
OPEN_STATUSES = ("pending", "paid")
EVENT_STATUSES = ("received", "processed", "ignored")

orders = Table(
    "payment_orders",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(100), nullable=False),
    Column("pack_id", String(40), nullable=False),
    Column("rail", String(10), nullable=False),
    Column("purpose", String(12), nullable=False, server_default=text("'checkout'")),
    Column("credits", BigInteger, nullable=False),
    Column("amount", String(80), nullable=False),
    Column("currency", String(12), nullable=False),
    Column("chain_id", BigInteger),
    Column("token_address", String(42)),
    Column("deposit_address", String(42), unique=True),
    Column("status", String(10), nullable=False),
    Column("provider_ref", String(100)),
    Column("payment_ref", String(100)),
    Column("customer_ref", String(100)),
    Column("amount_received", String(80), nullable=False, server_default=text("'0'")),
    Column("amount_refunded", String(80), nullable=False, server_default=text("'0'")),
    Column("credited", BigInteger, nullable=False, server_default=text("0")),
    Column("clawed_back", BigInteger, nullable=False, server_default=text("0")),
    Column("failure", String(200)),
    # Look-ups the provider refused for good (a 4xx) in a row: at payment_reconciler.MAX_LOOKUP_FAILURES the
    # reconciler parks the order (expired, still creditable by a late event) instead of asking forever.
    Column("lookup_failures", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("paid_at", Timestamp),
    Column("credited_at", Timestamp),
    UniqueConstraint("rail", "provider_ref", name="uq_payment_orders_rail_provider_ref"),
    CheckConstraint(f"rail IN {RAILS!r}", name="rail"),
    CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status"),
    CheckConstraint("purpose IN ('checkout', 'auto_top_up')", name="purpose"),
    CheckConstraint("credits > 0 AND credited >= 0 AND clawed_back >= 0", name="credits_non_negative"),
    Index("ix_payment_orders_user_created", "user_id", "created_at"),
    partial_index("ix_payment_orders_open", "rail", "created_at", where="status IN ('pending', 'paid')"),
)

# One row per provider event (and per result we fetched ourselves: a capture answer, a reconciler
# look-up). UNIQUE (rail, provider_event_id) makes a redelivery a no-op; `processed_at` is set in
# the transaction that applied it to the ledger, so an event whose processing failed is retried.
events = Table(
    "payment_events",
    Base.metadata,
    Column("id", Id, primary_key=True),
    Column("rail", String(10), nullable=False),
    Column("provider_event_id", String(200), nullable=False),
    Column("type", String(80), nullable=False),
    Column("payload", Text, nullable=False),
    Column("order_id", String(32)),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("received_at", Timestamp, nullable=False),
    Column("processed_at", Timestamp),
    UniqueConstraint("rail", "provider_event_id", name="uq_payment_events_rail_event"),
    CheckConstraint(f"status IN {EVENT_STATUSES!r}", name="status"),
    partial_index("ix_payment_events_unprocessed", "received_at", where="status = 'received'"),
)

# The n of each deposit address (HD path .../0/n): an autoincrement id, so two intents never share one.
deposit_keys = Table(
    "payment_deposit_keys",
    Base.metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", String(32), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

crypto_transfers = Table(
    "payment_crypto_transfers",
    Base.metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", String(32), nullable=False, index=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("log_index", Integer, nullable=False),  # -1: the transaction's own value (native coin)
    Column("token_address", String(42)),
    Column("amount", String(80), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("status", String(10), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("block_time", Timestamp),  # the block's own timestamp: lateness is judged by it
    Column("unknown_since", BigInteger),  # the head when the node first had no answer for it
    Column("review", String(20)),  # why an operator must look (payments_crypto_review.REASONS)
    Column("reviewed_at", Timestamp),
    UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_payment_crypto_transfers_transfer"),
    CheckConstraint("status IN ('seen', 'confirmed', 'orphaned')", name="status"),
    partial_index(
        "ix_payment_crypto_transfers_review", "review", where="review IS NOT NULL AND reviewed_at IS NULL"
    ),
)

# How far the crypto scanner has looked on each chain (it rescans the unconfirmed tail every pass).
chain_cursors = Table(
    "payment_chain_cursors",
    Base.metadata,
    Column("chain_id", BigInteger, primary_key=True, autoincrement=False),
    Column("next_block", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

auto_top_ups = Table(
    "payment_auto_top_ups",
    Base.metadata,
    Column("user_id", String(100), primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=text("false")),
    Column("threshold", BigInteger, nullable=False),
    Column("pack_id", String(40), nullable=False),
    Column("max_per_month", Integer, nullable=False),
    Column("max_amount_per_month", String(80)),  # the pack's currency's minor units; NULL: price x count
    Column("customer_ref", String(100)),
    Column("payment_method_ref", String(100)),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("disabled_reason", String(200)),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint("threshold >= 0 AND max_per_month >= 1", name="limits"),
)
