"""Payments: orders, provider events, deposit keys, crypto transfers, auto top-up.

Revision ID: 0007_payments
Revises: 0006_signup_policy
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_payments"
down_revision = "0006_signup_policy"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("pack_id", sa.String(40), nullable=False),
        sa.Column("rail", sa.String(10), nullable=False),
        sa.Column("purpose", sa.String(12), nullable=False, server_default=sa.text("'checkout'")),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("currency", sa.String(12), nullable=False),
        sa.Column("chain_id", sa.BigInteger),
        sa.Column("token_address", sa.String(42)),
        sa.Column("deposit_address", sa.String(42)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("provider_ref", sa.String(100)),
        sa.Column("payment_ref", sa.String(100)),
        sa.Column("customer_ref", sa.String(100)),
        sa.Column("amount_received", sa.String(80), nullable=False, server_default=sa.text("'0'")),
        sa.Column("amount_refunded", sa.String(80), nullable=False, server_default=sa.text("'0'")),
        sa.Column("credited", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("clawed_back", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("failure", sa.String(200)),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("paid_at", Timestamp),
        sa.Column("credited_at", Timestamp),
        sa.UniqueConstraint("deposit_address", name="uq_payment_orders_deposit_address"),
        sa.UniqueConstraint("rail", "provider_ref", name="uq_payment_orders_rail_provider_ref"),
        sa.CheckConstraint("rail IN ('stripe', 'paypal', 'crypto')", name="ck_payment_orders_rail"),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'credited', 'refunded', 'disputed', 'expired', 'failed')",
            name="ck_payment_orders_status",
        ),
        sa.CheckConstraint("purpose IN ('checkout', 'auto_top_up')", name="ck_payment_orders_purpose"),
        sa.CheckConstraint(
            "credits > 0 AND credited >= 0 AND clawed_back >= 0",
            name="ck_payment_orders_credits_non_negative",
        ),
    )
    op.create_index("ix_payment_orders_user_created", "payment_orders", ["user_id", "created_at"])
    op.create_index(
        "ix_payment_orders_open",
        "payment_orders",
        ["rail", "created_at"],
        postgresql_where=sa.text("status IN ('pending', 'paid')"),
        sqlite_where=sa.text("status IN ('pending', 'paid')"),
    )
    op.create_table(
        "payment_events",
        sa.Column("id", Id, primary_key=True),
        sa.Column("rail", sa.String(10), nullable=False),
        sa.Column("provider_event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("order_id", sa.String(32)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("error", sa.Text),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("processed_at", Timestamp),
        sa.UniqueConstraint("rail", "provider_event_id", name="uq_payment_events_rail_event"),
        sa.CheckConstraint("status IN ('received', 'processed', 'ignored')", name="ck_payment_events_status"),
    )
    op.create_index(
        "ix_payment_events_unprocessed",
        "payment_events",
        ["received_at"],
        postgresql_where=sa.text("status = 'received'"),
        sqlite_where=sa.text("status = 'received'"),
    )
    op.create_table(
        "payment_deposit_keys",
        sa.Column("id", Id, primary_key=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("order_id", name="uq_payment_deposit_keys_order_id"),
    )
    op.create_table(
        "payment_crypto_transfers",
        sa.Column("id", Id, primary_key=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("token_address", sa.String(42)),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_payment_crypto_transfers_transfer"),
        sa.CheckConstraint(
            "status IN ('seen', 'confirmed', 'orphaned')", name="ck_payment_crypto_transfers_status"
        ),
    )
    op.create_index("ix_payment_crypto_transfers_order_id", "payment_crypto_transfers", ["order_id"])
    op.create_table(
        "payment_chain_cursors",
        sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("next_block", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "payment_auto_top_ups",
        sa.Column("user_id", sa.String(100), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("pack_id", sa.String(40), nullable=False),
        sa.Column("max_per_month", sa.Integer, nullable=False),
        sa.Column("customer_ref", sa.String(100)),
        sa.Column("payment_method_ref", sa.String(100)),
        sa.Column("failures", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("disabled_reason", sa.String(200)),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint("threshold >= 0 AND max_per_month >= 1", name="ck_payment_auto_top_ups_limits"),
    )


def downgrade() -> None:
    op.drop_table("payment_auto_top_ups")
    op.drop_table("payment_chain_cursors")
    op.drop_index("ix_payment_crypto_transfers_order_id", table_name="payment_crypto_transfers")
    op.drop_table("payment_crypto_transfers")
    op.drop_table("payment_deposit_keys")
    op.drop_index("ix_payment_events_unprocessed", table_name="payment_events")
    op.drop_table("payment_events")
    op.drop_index("ix_payment_orders_open", table_name="payment_orders")
    op.drop_index("ix_payment_orders_user_created", table_name="payment_orders")
    op.drop_table("payment_orders")
