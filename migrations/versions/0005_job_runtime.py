"""Jobs: worker heartbeats, the client's request fingerprint, and waiting for a turn or a slot.

Revision ID: 0005_job_runtime
Revises: 0004_assistant
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_job_runtime"
down_revision = "0004_assistant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("request_hash", sa.String(64)))
        batch.add_column(sa.Column("after_job_id", sa.String(32)))
        batch.add_column(
            sa.Column("waiting_slot", sa.Boolean, nullable=False, server_default=sa.text("false"))
        )
    op.create_index(
        "ix_jobs_after_job",
        "jobs",
        ["after_job_id"],
        postgresql_where=sa.text("after_job_id IS NOT NULL AND status = 'queued'"),
        sqlite_where=sa.text("after_job_id IS NOT NULL AND status = 'queued'"),
    )
    op.create_index(
        "ix_jobs_user_open",
        "jobs",
        ["user_id", "queue", "status"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_user_open", table_name="jobs")
    op.drop_index("ix_jobs_after_job", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("waiting_slot")
        batch.drop_column("after_job_id")
        batch.drop_column("request_hash")
        batch.drop_column("heartbeat_at")
