"""Payments: failed reconciler look-ups per order (a permanent failure is parked after a few), and a money
cap per month on auto top-up.

Revision ID: 0010_payments_reconcile_caps
Revises: 0009_payments_crypto_review
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_payments_reconcile_caps"
down_revision = "0009_payments_crypto_review"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_orders") as batch:
        batch.add_column(
            sa.Column("lookup_failures", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
    # NULL for settings saved before: the cap is then the pack's price times max_per_month.
    with op.batch_alter_table("payment_auto_top_ups") as batch:
        batch.add_column(sa.Column("max_amount_per_month", sa.String(80)))


def downgrade() -> None:
    with op.batch_alter_table("payment_auto_top_ups") as batch:
        batch.drop_column("max_amount_per_month")
    with op.batch_alter_table("payment_orders") as batch:
        batch.drop_column("lookup_failures")
