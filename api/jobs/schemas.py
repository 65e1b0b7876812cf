"""Marshmallow schemas of jobs: the job resource, the 202 answer, the diagnostic request."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import url_for

from api.fields import JsonBoolean, JsonInteger, UtcDateTime
from api.money import Credits
from api.pagination import page_schema
from orchestration.tables import JOB_STATUSES

WORK_QUEUES = ("interactive", "agents", "images")
MAX_STEPS = 10_000


class QuotedCostSchema(ma.Schema):
    """What a new job was quoted and holds (credits)."""

    quoted = Credits(required=True)
    held = Credits(required=True)


class CostSchema(QuotedCostSchema):
    """What a job was quoted, holds, and was charged and released (credits)."""

    charged = Credits(allow_none=True)
    released = Credits(allow_none=True)


class ReceiptSchema(ma.Schema):
    """What an ended job was charged and released, and the ledger entry that captured or voided its hold."""

    charged = ma.fields.String(required=True)
    released = ma.fields.String(required=True)
    entry_id = ma.fields.String(allow_none=True)
    entry_hash = ma.fields.String(allow_none=True)
    price_version = ma.fields.String(allow_none=True)
    sealed_in = ma.fields.Integer(metadata={"description": "The checkpoint number, once sealed"})


class JobSchema(ma.Schema):
    """A job of any kind."""

    id = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(JOB_STATUSES))
    model = ma.fields.String(allow_none=True)
    queue = ma.fields.String()
    priority = ma.fields.Integer()
    progress = ma.fields.Dict(allow_none=True)
    result = ma.fields.Dict(allow_none=True)
    error = ma.fields.Dict(allow_none=True)
    cost = ma.fields.Nested(CostSchema, required=True)
    receipt = ma.fields.Nested(ReceiptSchema, allow_none=True)
    attempts = ma.fields.Integer()
    created_at = UtcDateTime(required=True)
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)


JobPageSchema = page_schema(JobSchema, "JobPage")


class JobListArgsSchema(ma.Schema):
    """Filters of the job list."""

    status = ma.fields.String(validate=ma.validate.OneOf(JOB_STATUSES))
    kind = ma.fields.String(validate=ma.validate.Length(max=40))


class JobAcceptedSchema(ma.Schema):
    """The 202 answer of every job-creating POST."""

    job_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    status_url = ma.fields.String(required=True)
    events_url = ma.fields.String(required=True)
    cost = ma.fields.Nested(QuotedCostSchema, required=True)


class CancelAnswerSchema(ma.Schema):
    """`canceled` when it ended at once, `canceling` when its running step will stop."""

    job_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)


class DiagnosticJobSchema(ma.Schema):
    """A job that exercises the pipeline: steps of sleep, progress, tokens, injected failures."""

    steps = JsonInteger(load_default=3, validate=ma.validate.Range(0, MAX_STEPS))
    sleep_ms = JsonInteger(load_default=0, validate=ma.validate.Range(0, 60_000))
    cost_per_step = Credits(
        sign="non-negative", load_default=1000, metadata={"description": "credits charged per step"}
    )
    fail_at_step = JsonInteger(
        load_default=None, allow_none=True, validate=ma.validate.Range(1, MAX_STEPS)
    )
    retryable_failures = JsonInteger(load_default=0, validate=ma.validate.Range(0, 10))
    tokens = JsonBoolean(load_default=False)
    queue = ma.fields.String(load_default="interactive", validate=ma.validate.OneOf(WORK_QUEUES))
    time_limit_s = JsonInteger(load_default=300, validate=ma.validate.Range(1, 3600))
    priority = JsonInteger(
        load_default=5, validate=ma.validate.Range(0, 9),
        metadata={"description": "0 is the most urgent"},
    )


def job_view(row: Any, receipt: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job row as the JobSchema expects it (with its receipt once ended, when the caller read it)."""
    return {
        "receipt": receipt,
        **{
            name: getattr(row, name)
            for name in (
                "id",
                "kind",
                "status",
                "model",
                "queue",
                "priority",
                "progress",
                "result",
                "error",
                "attempts",
                "created_at",
                "started_at",
                "finished_at",
            )
        },
        "cost": {
            "quoted": row.cost_quoted,
            "held": row.cost_held,
            "charged": row.cost_charged,
            "released": row.cost_released,
        },
    }


def accepted_view(row: Any) -> dict[str, Any]:
    """The 202 answer for a created (or replayed) job."""
    return {
        "job_id": row.id,
        "status": row.status,
        "status_url": url_for("jobs.JobById", job_id=row.id),
        "events_url": url_for("jobs.JobEvents", job_id=row.id),
        "cost": {"quoted": row.cost_quoted, "held": row.cost_held},
    }
