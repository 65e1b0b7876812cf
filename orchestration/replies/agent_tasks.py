"""Agent task use case: choose the model, freeze its prices, validate the data, hold `max_credits`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from assistant.agents.data_stats import DataError, parse_records
from assistant.agents.graph import KINDS
from assistant.selection import select_model
from orchestration.accounts.users import DEFAULT_PREFERENCES, get_user
from orchestration.jobs.create import CreateJob, create_job
from orchestration.jobs.models import work_queue
from orchestration.replies.conversations import models
from orchestration.services import Services

__all__ = ["KINDS", "DataError", "StartAgentTask", "start_agent_task"]


@dataclass(frozen=True)
class StartAgentTask:
    """Command: run an agent task of `kind` for `user_id`, spending at most `max_credits` (micro)."""

    user_id: str
    kind: str
    prompt: str
    max_credits: int
    model: str | None = None
    data: str | None = None
    idempotency_key: str | None = None
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    dry_run: bool = False


def start_agent_task(services: Services, command: StartAgentTask) -> Row[Any]:
    """Quote (the hold is max_credits), hold and enqueue an `agent` job on the `agents` queue."""
    settings = services.settings
    if command.kind not in KINDS:
        raise ValueError(f"unknown agent kind {command.kind!r}")
    if command.kind == "analysis":
        if not command.data:
            raise DataError("an analysis needs `data` (CSV or JSON)")
        if len(command.data.encode()) > settings.AGENT_DATA_MAX_BYTES:
            raise DataError(f"`data` is larger than {settings.AGENT_DATA_MAX_BYTES} bytes")
        parse_records(command.data)
    with services.uow(autocommit=True) as db:
        user = get_user(db, user_id=command.user_id)
    preferences = user.preferences if user else dict(DEFAULT_PREFERENCES)
    spec = select_model(
        models(services),
        explicit=command.model,
        user_default=preferences.get("default_chat_model"),
        cost_mode=preferences.get("cost_mode", "balanced"),
    )
    params = {
        "agent_kind": command.kind,
        "prompt": command.prompt,
        "data": command.data if command.kind == "analysis" else None,
        "model": spec.id,
        "max_credits": command.max_credits,
        "max_tokens": min(settings.AGENT_STEP_MAX_TOKENS, spec.context_length // 4),
        "pricing": dict(spec.pricing),
        "price_version": spec.price_version,
        "queue": work_queue(spec, io_queue="agents"),
    }
    row, _created = create_job(
        services,
        CreateJob(
            user_id=command.user_id,
            kind="agent",
            params=params,
            request={
                "kind": command.kind,
                "prompt": command.prompt,
                "model": command.model,
                "max_credits": command.max_credits,
                "data": command.data,
            },
            idempotency_key=command.idempotency_key,
            api_key_id=command.api_key_id,
            daily_credit_limit=command.daily_credit_limit,
            dry_run=command.dry_run,
        ),
    )
    return row
