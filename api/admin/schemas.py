"""Schemas of the admin views: users, adjustments, jobs, reports, checkpoints and the audit log."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.account.credits import TransactionSchema
from api.fields import QueryInteger, UtcDateTime
from api.jobs.schemas import CostSchema
from api.money import Credits
from api.pagination import MAX_LIMIT, page_schema
from orchestration.reports.ledger_reports import REVENUE_GROUPS, USAGE_GROUPS
from orchestration.tables import JOB_STATUSES


class UserQuerySchema(ma.Schema):
    """Find users by a part of their id, external id or email."""

    q = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    limit = QueryInteger(load_default=50, validate=ma.validate.Range(1, MAX_LIMIT))


class UserSchema(ma.Schema):
    """A user as an operator sees them."""

    id = ma.fields.String(required=True)
    external_id = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)


class UserListSchema(ma.Schema):
    """Users found."""

    items = ma.fields.List(ma.fields.Nested(UserSchema), required=True)


class AdminBalanceSchema(ma.Schema):
    """A balance in credits."""

    posted = Credits(required=True)
    held = Credits(required=True)
    available = Credits(required=True)


class AdminJobSchema(ma.Schema):
    """A job without what its user wrote or got back (prompts and answers stay out of admin views)."""

    id = ma.fields.String(required=True)
    user_id = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(JOB_STATUSES))
    model = ma.fields.String(allow_none=True)
    queue = ma.fields.String(required=True)
    api_key_id = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer(required=True)
    error = ma.fields.Dict(allow_none=True)
    cost = ma.fields.Nested(CostSchema, required=True)
    created_at = UtcDateTime(required=True)
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)


AdminJobPageSchema = page_schema(AdminJobSchema, "AdminJobPage")


class UserOverviewSchema(UserSchema):
    """A user with their balance, newest jobs and newest ledger entries."""

    balance = ma.fields.Nested(AdminBalanceSchema, required=True)
    jobs = ma.fields.List(ma.fields.Nested(AdminJobSchema), required=True)
    entries = ma.fields.List(ma.fields.Nested(TransactionSchema), required=True)


class AdminJobArgsSchema(ma.Schema):
    """Filters of every user's jobs."""

    status = ma.fields.String(validate=ma.validate.OneOf(JOB_STATUSES))
    kind = ma.fields.String(validate=ma.validate.Length(1, 40))
    user_id = ma.fields.String(validate=ma.validate.Length(1, 40))


class AdjustmentSchema(ma.Schema):
    """A signed correction of a user's balance, with the reason the audit log keeps."""

    user_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))
    credits = Credits(required=True, whole_digits=9, metadata={"description": "Negative to take credits"})
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))


class AdjustmentResultSchema(ma.Schema):
    """The adjustment as booked, and the balance after it."""

    user_id = ma.fields.String(required=True)
    credits = Credits(required=True)
    reason = ma.fields.String(required=True)
    entry_id = ma.fields.String(required=True)
    balance = ma.fields.Nested(AdminBalanceSchema, required=True)


def _groups(allowed: tuple[str, ...], default: str) -> ma.fields.String:
    return ma.fields.String(
        load_default=default,
        validate=ma.validate.Regexp(f"^({'|'.join(allowed)})(,({'|'.join(allowed)}))*$"),
        metadata={"description": f"Comma-separated, among {', '.join(allowed)}"},
    )


class _PeriodSchema(ma.Schema):
    start = ma.fields.AwareDateTime(
        data_key="from",
        load_default=None,
        metadata={"description": "Inclusive, RFC 3339 (default: 30 days ago)"},
    )
    end = ma.fields.AwareDateTime(
        data_key="to", load_default=None, metadata={"description": "Exclusive, RFC 3339 (default: now)"}
    )


class UsageArgsSchema(_PeriodSchema):
    """The period and grouping of a usage report."""

    group_by = _groups(USAGE_GROUPS, "day")


class RevenueArgsSchema(_PeriodSchema):
    """The period and grouping of a revenue report."""

    group_by = _groups(REVENUE_GROUPS, "day")


class UsageRowSchema(ma.Schema):
    """Credits charged to jobs in one group (only the grouped fields are present)."""

    day = ma.fields.String()
    model = ma.fields.String(allow_none=True)
    kind = ma.fields.String(allow_none=True)
    user = ma.fields.String(allow_none=True)
    api_key = ma.fields.String(allow_none=True)
    entries = ma.fields.Integer(required=True)
    charged = Credits(required=True)


class RevenueRowSchema(ma.Schema):
    """Credits a rail brought in and took back (refunds, clawbacks) in one group."""

    day = ma.fields.String()
    rail = ma.fields.String()
    brought_in = Credits(required=True)
    taken_back = Credits(required=True)
    net = Credits(required=True)


def _report_schema(row: type[ma.Schema], name: str, doc: str) -> type[ma.Schema]:
    """A report's schema: its period, grouping, rows of `row` and their total (one class per OpenAPI name)."""
    fields: dict[str, Any] = {
        "__doc__": doc,
        "start": UtcDateTime(data_key="from", required=True),
        "end": UtcDateTime(data_key="to", required=True),
        "group_by": ma.fields.List(ma.fields.String(), required=True),
        "items": ma.fields.List(ma.fields.Nested(row), required=True),
        "total": ma.fields.Nested(row, required=True),
    }
    return type(name, (ma.Schema,), fields)


UsageReportSchema = _report_schema(UsageRowSchema, "UsageReport", "A usage report and its totals.")
RevenueReportSchema = _report_schema(RevenueRowSchema, "RevenueReport", "A revenue report and its totals.")


class CheckpointSchema(ma.Schema):
    """A signed checkpoint of the ledger."""

    number = ma.fields.Integer(required=True)
    size = ma.fields.Integer(required=True)
    root = ma.fields.String(required=True)
    prev_hash = ma.fields.String(required=True)
    hash = ma.fields.String(required=True)
    algorithm = ma.fields.String(required=True)
    key_id = ma.fields.String(required=True)
    created_at = UtcDateTime(required=True)


CheckpointPageSchema = page_schema(CheckpointSchema, "CheckpointPage")


class AuditArgsSchema(ma.Schema):
    """Filters of the audit log."""

    action = ma.fields.String(validate=ma.validate.Regexp("^[a-z_.]{1,40}$"))
    actor_id = ma.fields.String(validate=ma.validate.Regexp("^[A-Za-z0-9_-]{1,40}$"))
    target = ma.fields.String(validate=ma.validate.Length(1, 120))


class AuditEntrySchema(ma.Schema):
    """One admin action: who, what, to what, when, the state before and after, and the chain hash."""

    seq = ma.fields.Integer(required=True)
    actor_id = ma.fields.String(required=True)
    actor_role = ma.fields.String(required=True)
    action = ma.fields.String(required=True)
    target = ma.fields.String(required=True)
    reason = ma.fields.String(allow_none=True)
    before = ma.fields.Raw(allow_none=True)
    after = ma.fields.Raw(allow_none=True)
    created_at = UtcDateTime(required=True)
    hash = ma.fields.String(required=True)


AuditPageSchema = page_schema(AuditEntrySchema, "AuditPage")
