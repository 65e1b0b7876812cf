"""Notifications: what each user watches (low-balance thresholds, webhook events), the outbox of
notifications, webhook endpoints and their deliveries.

Revision ID: 0013_notify
Revises: 0012_embeddings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_notify"
down_revision = "0012_embeddings"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notify_watches",
        sa.Column("user_id", sa.String(40), primary_key=True),
        sa.Column("floor", sa.BigInteger),
        sa.Column("ceiling", sa.BigInteger),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("told", sa.JSON, nullable=False),
        sa.Column("events", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("endpoint_id", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("fanned_out_at", TS),
        sa.Column("emailed_at", TS),
    )
    op.create_index("ix_notifications_user", "notifications", ["user_id", "created_at"])
    op.create_index(
        "ix_notifications_unsent",
        "notifications",
        ["created_at"],
        postgresql_where=sa.text("fanned_out_at IS NULL"),
        sqlite_where=sa.text("fanned_out_at IS NULL"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_until", TS),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("disabled_reason", sa.String(200)),
        sa.Column("failing_since", TS),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_webhook_endpoints_user_id", "webhook_endpoints", ["user_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("notification_id", sa.String(40), nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_attempt_at", TS),
        sa.Column("response_status", sa.Integer),
        sa.Column("error", sa.String(300)),
        sa.Column("replay_of", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_user", "webhook_deliveries", ["user_id", "created_at"])
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("notifications")
    op.drop_table("notify_watches")
