"""Personal spending limits: at most N credits of jobs per UTC day or month, read by the account lock.

Revision ID: 0015_spending_limits
Revises: 0014_images
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_spending_limits"
down_revision = "0014_images"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spending_limits",
        sa.Column("user_id", sa.String(100), primary_key=True),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(5), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spending_limits")
