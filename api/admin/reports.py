"""`/api/v1/admin/reports/usage` and `/revenue`: sums of ledger entries, as JSON or CSV (Accept: text/csv)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.admin.schemas import RevenueArgsSchema, RevenueReportSchema, UsageArgsSchema, UsageReportSchema
from api.auth import admin_read_required
from api.money import credits_text
from api.services import services
from orchestration.reports import ledger_reports as reports

blp = Blueprint("admin-reports", __name__, url_prefix="/api/v1/admin/reports", description="Reports (admin)")
DEFAULT_DAYS = 30
CSV_DOC = {"description": "The same rows as CSV (send `Accept: text/csv`); credits as decimal strings"}
MONEY = ("charged", "brought_in", "taken_back", "net")

Report = Callable[..., list[dict[str, Any]]]


def _wants_csv() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def _csv(name: str, columns: list[str], rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [credits_text(row[c]) if c in MONEY else ("" if row[c] is None else row[c]) for c in columns]
        )
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _run(name: str, report: Report, amounts: tuple[str, ...], args: dict[str, Any]) -> Any:
    end = args["end"] or datetime.now(UTC)
    start = args["start"] or end - timedelta(days=DEFAULT_DAYS)
    group_by = list(dict.fromkeys(part for part in args["group_by"].split(",") if part))
    period = reports.Period(start.astimezone(UTC), end.astimezone(UTC))
    try:
        with services().uow(snapshot=True) as db:
            rows = report(db, period=period, group_by=group_by)
    except reports.ReportError as exc:
        abort(422, message=str(exc), kind="invalid-period")
        raise
    total = {name_: sum(row[name_] for row in rows) for name_ in amounts}
    if "entries" in amounts:
        total["entries"] = sum(row["entries"] for row in rows)
    if _wants_csv():
        return _csv(name, [*group_by, *amounts], rows)
    return {"start": period.start, "end": period.end, "group_by": group_by, "items": rows, "total": total}


@blp.route("/usage")
class Usage(MethodView):
    """What jobs were charged."""

    @admin_read_required
    @blp.arguments(UsageArgsSchema, location="query")
    @blp.response(200, UsageReportSchema)
    @blp.alt_response(200, content_type="text/csv", success=True, **CSV_DOC)  # type: ignore[arg-type]
    def get(self, args: dict[str, Any]) -> Any:
        """Credits charged in [from, to), grouped by day, model, kind, user, api_key (comma-separated)."""
        return _run("usage", reports.usage, ("entries", "charged"), args)


@blp.route("/revenue")
class Revenue(MethodView):
    """What the payment rails brought in and took back."""

    @admin_read_required
    @blp.arguments(RevenueArgsSchema, location="query")
    @blp.response(200, RevenueReportSchema)
    @blp.alt_response(200, content_type="text/csv", success=True, **CSV_DOC)  # type: ignore[arg-type]
    def get(self, args: dict[str, Any]) -> Any:
        """Credits bought, taken back (refunds, clawbacks, debt) and net in [from, to), by day and/or rail."""
        return _run("revenue", reports.revenue, ("brought_in", "taken_back", "net"), args)
