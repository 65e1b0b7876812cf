"""Admin view of the job machinery: dead letters and their replay; the caller's own event stream."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.admin.routes import actor
from api.auth.context import admin_read_required, admin_required, auth_required, current_user_id
from api.fields import UtcDateTime
from api.pagination import PageArgsSchema, decode_time_cursor, page, page_schema, time_position
from api.services import services
from api.streams.events import user_event_stream
from api.streams.schemas import USER_EVENT, stream_doc
from orchestration.jobs import dead_letters
from orchestration.reports import audit

blp = Blueprint("job-admin", __name__, url_prefix="/api/v1", description="Dead letters and event streams")


class DeadLetterSchema(ma.Schema):
    """A task that will not run again by itself."""

    id = ma.fields.String(required=True)
    task_name = ma.fields.String(required=True)
    task_id = ma.fields.String(required=True)
    args = ma.fields.List(ma.fields.Raw(), required=True)
    kwargs = ma.fields.Dict(required=True)
    reason = ma.fields.String(required=True, metadata={"description": "retries_exhausted or redelivery_cap"})
    error = ma.fields.String(required=True)
    job_id = ma.fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)
    replayed_at = UtcDateTime(allow_none=True)
    replays = ma.fields.Integer(required=True)


DeadLetterPageSchema = page_schema(DeadLetterSchema, "DeadLetterPage")


def _view(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


@blp.route("/admin/dead-letters")
class DeadLetters(MethodView):
    """Dead letters, newest first."""

    @admin_read_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, DeadLetterPageSchema)
    def get(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """List tasks that exhausted their retries or redeliveries."""
        before = decode_time_cursor(cursor)
        rows = dead_letters.list_letters(services(), limit=limit + 1, before=before)
        answer = page(rows, limit=limit, position=time_position)
        answer["items"] = [_view(row) for row in answer["items"]]
        return answer


@blp.route("/admin/dead-letters/<letter_id>/replay")
class DeadLetterReplay(MethodView):
    """Send a dead letter's task again."""

    @admin_required
    @blp.response(202, DeadLetterSchema)
    def post(self, letter_id: str) -> dict[str, Any]:
        """Re-enqueue the task by name; the saga's compare-and-sets make a replay safe; audited."""
        with audit.audited(services(), actor=actor(), action="dead_letter.replay",
                           target=f"dead_letter:{letter_id}") as note:
            try:
                replayed = _view(dead_letters.replay(services(), letter_id=letter_id))
            except dead_letters.DeadLetterNotFound:
                abort(404, message="No such dead letter.")
                raise  # abort raised already; this tells type checkers so
            note.after = {name: replayed[name] for name in ("task_name", "job_id", "replays", "replayed_at")}
            note.before = {"replays": replayed["replays"] - 1}
        return replayed


@blp.route("/me/events")
class MyEvents(MethodView):
    """The caller's balance changes and notifications as Server-Sent Events."""

    @auth_required
    @blp.doc(**stream_doc("Balance changes and notifications", USER_EVENT, allow_now=True))
    def get(self) -> Any:
        """Follow balance changes (held, available, posted) and notifications; never ends by itself."""
        return user_event_stream(current_user_id())
