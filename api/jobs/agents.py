"""Agent tasks: research, code and analysis jobs (kind `agent`, queue `agents`) capped by max_credits."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.auth.context import auth_required, current_auth, current_user_id
from api.dry_run import dry_run_requested, dry_runnable
from api.errors import SHORT_BALANCE
from api.idempotency import PARAMETER_DOC, current_idempotency_key, idempotent
from api.jobs.schemas import JobAcceptedSchema, accepted_view
from api.money import Credits
from api.ratelimit import rate_limit
from api.services import services
from api.streams.created import streams_when_asked
from orchestration.replies.agent_tasks import KINDS, DataError, StartAgentTask, start_agent_task

blp = Blueprint(
    "agents", __name__, url_prefix="/api/v1", description="Agentic tasks: research, code, analysis"
)


class AgentTaskSchema(ma.Schema):
    """An agent task; `max_credits` is the hold and a hard cap on what it spends."""

    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(KINDS))
    prompt = ma.fields.String(required=True, validate=ma.validate.Length(1, 20_000))
    model = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(1, 100))
    max_credits = Credits(
        sign="positive", required=True, metadata={"description": "credits: the hold and the hard cap"}
    )
    data = ma.fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "analysis only: CSV with a header row, or JSON records (size-limited)"},
    )


@blp.route("/agent-tasks")
class AgentTasks(MethodView):
    """Start an agent task."""

    @auth_required
    @rate_limit("jobs")
    @dry_runnable
    @streams_when_asked
    @idempotent
    @blp.arguments(AgentTaskSchema())  # an instance: from a class, webargs builds one per request
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(402, description="Not enough credits for the hold (max_credits)", **SHORT_BALANCE)
    @blp.alt_response(422, description="Unknown or unavailable model, or unreadable or oversized data")
    @blp.doc(parameters=[PARAMETER_DOC])
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Hold max_credits and start the task (job kind `agent`, queue `agents`); follow it as a job."""
        command = StartAgentTask(
            user_id=current_user_id(),
            kind=body["kind"],
            prompt=body["prompt"],
            max_credits=body["max_credits"],
            model=body.get("model"),
            data=body.get("data"),
            idempotency_key=current_idempotency_key(),
            api_key_id=current_auth().api_key_id,
            daily_credit_limit=current_auth().daily_credit_limit,
            dry_run=dry_run_requested(),
        )
        try:
            row = start_agent_task(services(), command)
        except DataError as exc:
            abort(422, message=str(exc), kind="bad-data")
        return accepted_view(row)
