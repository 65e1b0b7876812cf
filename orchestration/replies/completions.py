"""The `completion` job kind: a whole conversation sent by an OpenAI client, answered by one model reply.

The OpenAI-compatible API (api/openai/routes.py) is a thin adapter over this: the same quote and hold
(the prompt's token bound plus `max_tokens`), saga, settlement, ledger entries, rate limits, API-key
daily limits and Idempotency-Key as every job; no conversation is stored (the client sends it whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, or_, select

from assistant.providers import ProviderError
from assistant.reply import stream_reply
from assistant.selection import select_model
from assistant.transcript import Turn, token_bound
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.jobs.create import CreateJob, create_job
from orchestration.jobs.kinds import JobKind, QuoteError
from orchestration.jobs.models import catalog_models, job_model, work_queue
from orchestration.replies.model_reply import JobSink, reply_quote
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class StartCompletion:
    """Command: answer `messages` with `model` (sampling options as the client gave them)."""

    user_id: str
    model: str
    messages: list[Turn]
    max_tokens: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # temperature, top_p, stop
    end_user: str | None = None  # the client's own user id (OpenAI's `user`), kept on the job
    idempotency_key: str | None = None
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    sdk_retry: bool = False  # an OpenAI SDK's own retry of a whole answer (x-stainless-retry-count > 0)
    dry_run: bool = False

    def request(self) -> dict[str, Any]:
        """What the client asked for (an Idempotency-Key replay compares it)."""
        return {
            "model": self.model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "options": dict(self.options),
            "user": self.end_user,
        }


def start_completion(services: Services, command: StartCompletion) -> tuple[Row[Any], bool]:
    """Quote and hold the reply's worst case, create the job and enqueue it; (job, created)."""
    spec = select_model(catalog_models(services), explicit=command.model)
    max_tokens = command.max_tokens or min(
        services.settings.CHAT_DEFAULT_MAX_TOKENS, spec.context_length // 2
    )
    prompt_tokens = token_bound(command.messages)
    if max_tokens >= spec.context_length or prompt_tokens + max_tokens > spec.context_length:
        raise QuoteError(
            f"the messages ({prompt_tokens} tokens at most) and max_tokens ({max_tokens}) don't fit "
            f"{spec.id}'s context of {spec.context_length} tokens"
        )
    params = {
        "model": spec.id,
        "messages": command.messages,
        "max_tokens": max_tokens,
        "prompt_tokens": prompt_tokens,
        "options": dict(command.options),
        "user": command.end_user,
        "pricing": dict(spec.pricing),
        "price_version": spec.price_version,
        "queue": work_queue(spec),
        "time_limit_s": services.settings.INTERACTIVE_TIME_LIMIT_S,
    }
    job = CreateJob(
        user_id=command.user_id,
        kind="completion",
        params=params,
        idempotency_key=command.idempotency_key,
        api_key_id=command.api_key_id,
        daily_credit_limit=command.daily_credit_limit,
        request=command.request(),
        dry_run=command.dry_run,
    )
    if command.sdk_retry and not command.idempotency_key and not command.dry_run:
        earlier = retried_job(services, job)
        if earlier is not None:
            return earlier, False
    return create_job(services, job)


# An SDK retries a few seconds after its attempt failed (0.5-8 s of backoff, or a Retry-After up to 60 s).
RETRY_GRACE_S = 60


def retried_job(services: Services, command: CreateJob) -> Row[Any] | None:
    """The job an SDK's automatic retry repeats: the same credential's latest keyless completion of the
    same request that still runs, or that succeeded within RETRY_GRACE_S (its client timed out just
    before); None if there is none (the attempt never made a job, or it failed: a new job is right)."""
    now = datetime.now(UTC)
    settings = services.settings
    finished_since = now - timedelta(seconds=RETRY_GRACE_S)
    oldest = now - timedelta(
        seconds=settings.JOB_QUEUE_TIMEOUT_S + settings.INTERACTIVE_TIME_LIMIT_S + RETRY_GRACE_S
    )
    query = (
        select(jobs)
        .where(
            jobs.c.user_id == command.user_id,
            jobs.c.created_at > oldest,
            jobs.c.kind == command.kind,
            jobs.c.request_hash == command.request_hash(),
            jobs.c.idempotency_key.is_(None),
            jobs.c.api_key_id.is_not_distinct_from(command.api_key_id),
            or_(
                jobs.c.status.in_((QUEUED_SQL, RUNNING_SQL)),
                and_(jobs.c.status == "succeeded", jobs.c.finished_at > finished_since),
            ),
        )
        .order_by(jobs.c.created_at.desc())
        .limit(1)
    )
    with services.uow(autocommit=True) as db:
        return db.execute(query).first()


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Stream the reply to the client's messages; provider errors become retry or compensation."""
    params = ctx.params
    spec = job_model(ctx)
    try:
        reply = stream_reply(
            spec,
            [Turn(role=m["role"], content=m["content"]) for m in params["messages"]],
            max_tokens=int(params["max_tokens"]),
            settings=ctx.services.settings,
            pricing=params["pricing"],
            sink=JobSink(ctx),
            options=params.get("options") or {},
        )
    except ProviderError as exc:
        raise (RetryableError if exc.retryable else FinalError)(str(exc)) from exc
    return {**reply, "model": spec.id, "cost": credits_text(min(int(reply["cost"]), ctx.held))}


COMPLETION = JobKind(
    name="completion",
    queue="interactive",
    price=reply_quote,
    run=run,
    model=lambda params: str(params["model"]),
    route=lambda params: str(params.get("queue", "interactive")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
    restartable=False,  # the client saw part of the reply: a lost worker ends it failed
)
