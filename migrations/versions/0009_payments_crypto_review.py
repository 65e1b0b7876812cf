"""Crypto transfers keep their block's time (lateness is judged by it), when the node first could not
answer for them (unknown is not orphaned), and why an operator must look at them.

Revision ID: 0009_payments_crypto_review
Revises: 0008_conversation_bound
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_payments_crypto_review"
down_revision = "0008_conversation_bound"
branch_labels = None
depends_on = None

OPEN_REVIEW = "review IS NOT NULL AND reviewed_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("payment_crypto_transfers") as batch:
        batch.add_column(sa.Column("block_time", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("unknown_since", sa.BigInteger))
        batch.add_column(sa.Column("review", sa.String(20)))
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_payment_crypto_transfers_review",
        "payment_crypto_transfers",
        ["review"],
        postgresql_where=sa.text(OPEN_REVIEW),
        sqlite_where=sa.text(OPEN_REVIEW),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_crypto_transfers_review", table_name="payment_crypto_transfers")
    with op.batch_alter_table("payment_crypto_transfers") as batch:
        for name in ("reviewed_at", "review", "unknown_since", "block_time"):
            batch.drop_column(name)
