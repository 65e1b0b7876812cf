"""Tables of the orchestration room: jobs and dead letters."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

from runtime.db import Base, Timestamp, partial_index

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
# Open statuses as SQL constants for the hot statements, not bound parameters: psycopg prepares a
# statement run often, and PostgreSQL's generic plan for `status = $n` cannot use the partial indexes
# on open jobs (it scans all of a user's jobs, or the table); with the constant written in it can.
QUEUED_SQL: ColumnElement[str] = literal_column("'queued'")
RUNNING_SQL: ColumnElement[str] = literal_column("'running'")

jobs = Table(
    "jobs",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(100), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("status", String(10), nullable=False),
    Column("queue", String(20), nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("5")),
    Column("params", JSON, nullable=False),
    Column("model", String(100)),
    Column("quote", JSON, nullable=False),
    Column("hold_id", String(32)),
    Column("cost_quoted", BigInteger, nullable=False),
    Column("cost_held", BigInteger, nullable=False),
    Column("cost_charged", BigInteger),
    Column("cost_released", BigInteger),
    Column("cost_running", BigInteger, nullable=False, server_default=text("0")),
    Column("progress", JSON),
    Column("result", JSON),
    Column("error", JSON),
    Column("idempotency_key", String(200)),
    Column("api_key_id", String(40)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Which delivery of `run` owns the job: "<celery task id>:<retry number>"; a redelivered
    # or duplicated message carries no matching claim and stops.
    Column("claim", String(80)),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("run_completed", Boolean, nullable=False, server_default=text("false")),
    Column("enqueues", Integer, nullable=False, server_default=text("0")),
    Column("time_limit_s", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("enqueued_at", Timestamp),
    Column("started_at", Timestamp),
    Column("finished_at", Timestamp),
    # The worker process running the job refreshes this (orchestration/jobs/heartbeats.py); a running job
    # whose heartbeat went stale lost its worker, and the reaper or a cancel ends it.
    Column("heartbeat_at", Timestamp),
    # SHA-256 of the client's request (kind + what the client sent), compared on an Idempotency-Key
    # replay: params also hold derived values (message ids, token counts) that differ per attempt.
    Column("request_hash", String(64)),
    # A job that must not start before another ends (a conversation's next turn): its saga is sent
    # when that job reaches a final status (orchestration/jobs/dispatch.py).
    Column("after_job_id", String(32)),
    # A job whose user had every allowed slot of its queue running: sent again when one of them ends.
    Column("waiting_slot", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency_key"),
    CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status"),
    CheckConstraint("cost_held >= 0 AND cost_quoted >= 0", name="costs_non_negative"),
    CheckConstraint("cost_charged IS NULL OR cost_charged <= cost_held", name="charged_within_hold"),
    Index("ix_jobs_user_created", "user_id", "created_at"),
    partial_index("ix_jobs_open", "status", "created_at", where="status IN ('queued', 'running')"),
    partial_index(
        "ix_jobs_after_job", "after_job_id", where="after_job_id IS NOT NULL AND status = 'queued'"
    ),
    partial_index("ix_jobs_user_open", "user_id", "queue", "status", where="status IN ('queued', 'running')"),
)

dead_letters = Table(
    "dead_letters",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("task_name", String(200), nullable=False),
    Column("task_id", String(100), nullable=False),
    Column("args", JSON, nullable=False),
    Column("kwargs", JSON, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("error", Text, nullable=False),
    Column("job_id", String(32)),
    Column("created_at", Timestamp, nullable=False),
    Column("replayed_at", Timestamp),
    Column("replays", Integer, nullable=False, server_default=text("0")),
    Index("ix_dead_letters_created", "created_at"),
)
