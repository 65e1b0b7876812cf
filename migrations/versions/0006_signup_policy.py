"""Sign-up policy: welcome grants counted per client address and day (orchestration/accounts/welcome.py).

Revision ID: 0006_signup_policy
Revises: 0005_job_runtime
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_signup_policy"
down_revision = "0005_job_runtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "welcome_grants_by_address",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("granted", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("day", "client_address", name="pk_welcome_grants_by_address"),
    )


def downgrade() -> None:
    op.drop_table("welcome_grants_by_address")
