"""Assistant: model catalog, conversations, messages.

Revision ID: 0004_assistant
Revises: 0003_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_assistant"
down_revision = "0003_jobs"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("quality", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("capabilities", sa.JSON, nullable=False),
        sa.Column("pricing", sa.JSON, nullable=False),
        sa.Column("price_version", sa.String(40), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("environments", sa.JSON, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200)),
        sa.Column("model", sa.String(100)),
        sa.Column("positions", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_job_id", sa.String(32)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_conversations_user_created", "conversations", ["user_id", "created_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("model", sa.String(100)),
        sa.Column("job_id", sa.String(32)),
        sa.Column("usage", sa.JSON),
        sa.Column("cost", sa.BigInteger),
        sa.Column("finish_reason", sa.String(20)),
        sa.Column("embedding", sa.JSON),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], ondelete="CASCADE",
            name="fk_messages_conversation_id_conversations",
        ),
        sa.UniqueConstraint("conversation_id", "position", name="uq_messages_conversation_position"),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_index("ix_conversations_user_created", table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("models")
