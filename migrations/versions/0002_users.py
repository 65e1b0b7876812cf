"""Users, API keys and idempotency records.

Revision ID: 0002_users
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_users"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("external_id", sa.String(300), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("preferences", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("external_id", name="uq_users_external_id"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("daily_credit_limit", sa.BigInteger),
        sa.Column("spent_day", sa.String(10)),
        sa.Column("spent_today", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_keys_user_id_users"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_user_created", "api_keys", ["user_id", "created_at"])
    op.create_table(
        "idempotency_records",
        sa.Column("id", Id, nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("content_type", sa.String(100)),
        sa.Column("headers", sa.JSON),
        sa.Column("body", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_records"),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_records_user_key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_records")
    op.drop_index("ix_api_keys_user_created", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
