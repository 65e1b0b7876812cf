"""Jobs and dead letters.

Revision ID: 0003_jobs
Revises: 0002_users
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_jobs"
down_revision = "0002_users"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("queue", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("5")),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("model", sa.String(100)),
        sa.Column("quote", sa.JSON, nullable=False),
        sa.Column("hold_id", sa.String(32)),
        sa.Column("cost_quoted", sa.BigInteger, nullable=False),
        sa.Column("cost_held", sa.BigInteger, nullable=False),
        sa.Column("cost_charged", sa.BigInteger),
        sa.Column("cost_released", sa.BigInteger),
        sa.Column("cost_running", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("progress", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("api_key_id", sa.String(40)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("claim", sa.String(80)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("run_completed", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("enqueues", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("time_limit_s", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("enqueued_at", Timestamp),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')", name="ck_jobs_status"
        ),
        sa.CheckConstraint("cost_held >= 0 AND cost_quoted >= 0", name="ck_jobs_costs_non_negative"),
        sa.CheckConstraint(
            "cost_charged IS NULL OR cost_charged <= cost_held", name="ck_jobs_charged_within_hold"
        ),
    )
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at"])
    op.create_index(
        "ix_jobs_open",
        "jobs",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(100), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("kwargs", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("job_id", sa.String(32)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("replayed_at", Timestamp),
        sa.Column("replays", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_index("ix_jobs_open", table_name="jobs")
    op.drop_index("ix_jobs_user_created", table_name="jobs")
    op.drop_table("jobs")
