"""`/api/v1/admin/audit`: every admin action, newest first (admins and auditors)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.admin.schemas import AuditArgsSchema, AuditPageSchema
from api.auth import admin_read_required
from api.pagination import PageArgsSchema, decode_position_cursor, page
from api.services import services
from orchestration.reports import audit

blp = Blueprint("admin-audit", __name__, url_prefix="/api/v1/admin", description="Audit log (admin)")


@blp.route("/audit")
class AuditLog(MethodView):
    """The audit log."""

    @admin_read_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(AuditArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, AuditPageSchema)
    def get(self, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        """Who did what to what, when, with the state before and after; filter by action, actor, target."""
        rows = audit.entries(
            services(), limit=limit + 1, before_seq=decode_position_cursor(cursor), **filters
        )
        return page(rows, limit=limit, position=lambda row: [row["seq"]])
