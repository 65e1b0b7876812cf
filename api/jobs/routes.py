"""Jobs of every kind: read, list, follow (SSE), cancel; and the diagnostic job kind."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.auth.context import auth_required, current_auth, current_user_id
from api.dry_run import dry_run_requested, dry_runnable
from api.errors import SHORT_BALANCE, problem
from api.idempotency import PARAMETER_DOC, current_idempotency_key, idempotent
from api.jobs.schemas import (
    CancelAnswerSchema,
    DiagnosticJobSchema,
    JobAcceptedSchema,
    JobListArgsSchema,
    JobPageSchema,
    JobSchema,
    accepted_view,
    job_view,
)
from api.money import credits_text
from api.pagination import PageArgsSchema, decode_time_cursor, page, time_position
from api.ratelimit import rate_limit
from api.services import services
from api.streams.created import streams_when_asked
from api.streams.events import job_event_stream
from api.streams.schemas import JOB_EVENT, stream_doc
from orchestration.accounts.spending import SpendingLimitExceeded
from orchestration.errors import DailyLimitExceeded, JobAlreadyFinished, JobKeyConflict, JobNotFound
from orchestration.jobs import create as job_cases
from orchestration.jobs import receipts
from orchestration.jobs.kinds import QuoteError
from orchestration.jobs.progress import EVENT_TYPES

blp = Blueprint("jobs", __name__, url_prefix="/api/v1", description="Jobs of every kind and their progress")


def register_job_errors(app: Flask) -> None:
    """Job refusals as problem+json: a per-key daily limit is a 402 like a short balance."""

    @app.errorhandler(DailyLimitExceeded)
    def _daily_limit(exc: DailyLimitExceeded) -> Response:
        return problem(
            402,
            "This API key's daily credit limit can't cover the job.",
            kind="api-key-daily-limit",
            limit=credits_text(exc.limit),
            required=credits_text(exc.required),
        )

    @app.errorhandler(SpendingLimitExceeded)
    def _spending_limit(exc: SpendingLimitExceeded) -> Response:
        return problem(
            402,
            f"Your spending limit of {credits_text(exc.limit.credits)} credits per {exc.limit.period} "
            f"can't cover this job ({credits_text(exc.spent)} spent, {credits_text(exc.required)} needed).",
            kind="spending-limit",
            limit=credits_text(exc.limit.credits),
            period=exc.limit.period,
            spent=credits_text(exc.spent),
            required=credits_text(exc.required),
        )

    @app.errorhandler(JobKeyConflict)
    def _key_conflict(exc: JobKeyConflict) -> Response:
        return problem(409, str(exc), kind="idempotency-conflict")

    @app.errorhandler(QuoteError)
    def _unpriceable(exc: QuoteError) -> Response:
        return problem(422, str(exc), kind="unpriceable")


def own_job(job_id: str) -> Any:
    """The caller's job, or 404 (someone else's job is as unknown as a missing one)."""
    try:
        return job_cases.get_job(services(), user_id=current_user_id(), job_id=job_id)
    except JobNotFound:
        abort(404, message="No such job.")


@blp.route("/jobs/<job_id>")
class JobById(MethodView):
    """One job."""

    @auth_required
    @blp.response(200, JobSchema)
    def get(self, job_id: str) -> dict[str, Any]:
        """Poll a job: status, progress, result or error, cost; the receipt once it ended."""
        row = own_job(job_id)
        return job_view(row, receipts.job_receipt(services(), row))


@blp.route("/jobs")
class Jobs(MethodView):
    """The caller's jobs."""

    @auth_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(JobListArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, JobPageSchema)
    def get(
        self, limit: int, cursor: str | None, status: str | None = None, kind: str | None = None
    ) -> dict[str, Any]:
        """Own jobs, newest first; filter by `status` and `kind`."""
        before = decode_time_cursor(cursor)
        rows = job_cases.list_jobs(
            services(), user_id=current_user_id(), limit=limit + 1, before=before, status=status, kind=kind
        )
        answer = page(rows, limit=limit, position=time_position)
        answer["items"] = [job_view(row) for row in answer["items"]]
        return answer


@blp.route("/jobs/<job_id>/events")
class JobEvents(MethodView):
    """The job's progress as Server-Sent Events."""

    @auth_required
    @blp.doc(**stream_doc("Progress events; the stream ends after the final one", JOB_EVENT, allow_now=False,
                          events=sorted(EVENT_TYPES)))
    def get(self, job_id: str) -> Any:
        """Follow a job; `Last-Event-ID` resumes; the stream ends after the final event."""
        return job_event_stream(own_job(job_id))


@blp.route("/jobs/<job_id>/cancel")
class JobCancel(MethodView):
    """Cancel a job."""

    @auth_required
    @blp.response(202, CancelAnswerSchema)
    @blp.alt_response(409, description="The job already ended")
    def post(self, job_id: str) -> dict[str, Any]:
        """Queued: ends now, charge 0. Running: stops at its next check and pays what was delivered."""
        own_job(job_id)
        try:
            status = job_cases.cancel_job(services(), user_id=current_user_id(), job_id=job_id)
        except JobAlreadyFinished as exc:
            abort(409, message=str(exc), kind="job-finished", extra={"job_status": exc.status})
        return {"job_id": job_id, "status": status}


@blp.route("/diagnostics/jobs")
class DiagnosticJobs(MethodView):
    """Start a `diagnostic` job (not in production unless DIAGNOSTIC_JOBS_ENABLED)."""

    @auth_required
    @rate_limit("jobs")
    @dry_runnable
    @streams_when_asked
    @idempotent
    @blp.arguments(DiagnosticJobSchema())  # an instance: from a class, webargs builds one per request
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(402, description="Not enough credits for the hold", **SHORT_BALANCE)
    @blp.doc(parameters=[PARAMETER_DOC])
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Exercise the pipeline: sleep, progress, tokens, failures at a step, retryable errors."""
        if not services().settings.diagnostic_jobs:
            abort(404, message="Diagnostic jobs are disabled here.")
        priority = body.pop("priority")
        command = job_cases.CreateJob(
            user_id=current_user_id(),
            kind="diagnostic",
            params=body,
            priority=priority,
            idempotency_key=current_idempotency_key(),
            api_key_id=current_auth().api_key_id,
            daily_credit_limit=current_auth().daily_credit_limit,
            dry_run=dry_run_requested(),
        )
        row, _created = job_cases.create_job(services(), command)
        return accepted_view(row)
