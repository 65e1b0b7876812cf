"""`/api/v1/admin/users`, `/admin/adjustments`, `/admin/jobs`: users, their money and every job."""

from __future__ import annotations

import secrets
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.admin.routes import book
from api.admin.schemas import (
    AdjustmentResultSchema,
    AdjustmentSchema,
    AdminJobArgsSchema,
    AdminJobPageSchema,
    UserListSchema,
    UserOverviewSchema,
    UserQuerySchema,
)
from api.auth import admin_read_required, admin_required, current_auth
from api.errors import SHORT_BALANCE
from api.idempotency import current_idempotency_key, idempotent
from api.jobs.schemas import job_view
from api.pagination import PageArgsSchema, decode_time_cursor, page, time_position
from api.services import services
from orchestration.reports import admin

blp = Blueprint("admin-users", __name__, url_prefix="/api/v1/admin", description="Users and jobs (admin)")


def admin_job_view(row: Any) -> dict[str, Any]:
    """A job for an operator: its costs and state, never its prompt or answer."""
    shown = job_view(row)
    return {
        **{k: v for k, v in shown.items() if k not in {"result", "progress"}},
        "user_id": row.user_id,
        "api_key_id": row.api_key_id,
    }


@blp.route("/users")
class Users(MethodView):
    """Find users."""

    @admin_read_required
    @blp.arguments(UserQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, UserListSchema)
    def get(self, q: str, limit: int) -> dict[str, Any]:
        """Users whose id, external id or email contains `q`, newest first."""
        return {"items": admin.find_users(services(), query=q, limit=limit)}


@blp.route("/users/<user_id>")
class UserById(MethodView):
    """One user, with their money and jobs."""

    @admin_read_required
    @blp.response(200, UserOverviewSchema)
    def get(self, user_id: str) -> dict[str, Any]:
        """The user's balance, newest 20 jobs and newest 20 ledger entries."""
        try:
            found = admin.user_overview(services(), user_id=user_id)
        except admin.UserNotFound:
            abort(404, message="No such user.")
            raise
        return {**found, "jobs": [admin_job_view(row) for row in found["jobs"]]}


@blp.route("/adjustments")
class Adjustments(MethodView):
    """Correct a user's balance."""

    @admin_required
    @idempotent
    @blp.arguments(AdjustmentSchema)
    @blp.response(201, AdjustmentResultSchema)
    @blp.alt_response(402, description="A debit beyond the user's available credits", **SHORT_BALANCE)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add (negative: take) credits for a reason, through the ledger; audited, once per key."""
        key = f"admin-adjust:{current_auth().user_id}:{current_idempotency_key() or secrets.token_hex(16)}"
        booked = book(admin.Book("adjustment", body["user_id"], body["credits"], body["reason"], key))
        return {**body, "entry_id": booked["entry_id"], "balance": booked["balance"]}


@blp.route("/jobs")
class AllJobs(MethodView):
    """Every user's jobs."""

    @admin_read_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(AdminJobArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, AdminJobPageSchema)
    def get(self, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        """Jobs newest first; filter by `status`, `kind`, `user_id`."""
        rows = admin.list_jobs(services(), limit=limit + 1, before=decode_time_cursor(cursor), **filters)
        answer = page(rows, limit=limit, position=time_position)
        answer["items"] = [admin_job_view(row) for row in answer["items"]]
        return answer
