"""Conversations keep the token bound of their messages, so a new turn is priced without reading them.

Revision ID: 0008_conversation_bound
Revises: 0007_payments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_conversation_bound"
down_revision = "0007_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for conversations that existed before: the first new turn computes it from the messages.
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("prompt_bound", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("prompt_bound")
