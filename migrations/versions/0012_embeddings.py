"""Embeddings: each message's vector per embedding model, for semantic search over one's conversations.

Revision ID: 0012_embeddings
Revises: 0011_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_embeddings"
down_revision = "0011_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_vectors",
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], ondelete="CASCADE", name="fk_message_vectors_message_id_messages"
        ),
        sa.PrimaryKeyConstraint("message_id", "model", name="pk_message_vectors"),
    )


def downgrade() -> None:
    op.drop_table("message_vectors")
