"""Chat use cases: the model list, conversations, and posting a message (stored now, replied by a job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError

from assistant import conversations
from assistant.selection import ModelUnavailable, select_model
from assistant.specs import ModelSpec
from assistant.tables import conversations as conversations_table
from assistant.tables import messages
from assistant.transcript import Turn, token_bound
from orchestration.accounts.users import DEFAULT_PREFERENCES, users
from orchestration.jobs.create import CreateJob, find_by_key, insert_job, start_job
from orchestration.jobs.kinds import QuoteError
from orchestration.jobs.models import catalog_models, work_queue
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs

__all__ = ["ConversationBusy", "ConversationNotFound", "ModelUnavailable", "PostMessage"]
ON_BUSY = ("queue", "reject")


class ConversationNotFound(LookupError):
    """No such conversation for this user."""


class ConversationBusy(RuntimeError):
    """The conversation's previous reply is still running and the caller asked not to queue."""


@dataclass(frozen=True)
class PostMessage:
    """Command: add the user's message to a conversation and start the job that replies."""

    user_id: str
    conversation_id: str
    content: str
    model: str | None = None
    max_tokens: int | None = None
    on_busy: str = "queue"
    idempotency_key: str | None = None
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    dry_run: bool = False

    def request(self) -> dict[str, Any]:
        """What the client asked for: an Idempotency-Key replay compares this, not the derived params."""
        return {
            "conversation_id": self.conversation_id,
            "content": self.content,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "on_busy": self.on_busy,
        }


def models(services: Services) -> list[ModelSpec]:
    """Every model this environment lists, with price version and availability."""
    return catalog_models(services)


def check_default_chat_model(services: Services, model_id: str | None) -> None:
    """A user's default_chat_model must be a chat model this environment lists; ModelUnavailable if not."""
    if model_id is None:
        return
    chat_models = [spec.id for spec in models(services) if spec.kind == "chat"]
    if model_id not in chat_models:
        raise ModelUnavailable(f"{model_id!r} is not a chat model of the catalog", chat_models)


def create_conversation(
    services: Services, *, user_id: str, title: str | None, model: str | None
) -> Row[Any]:
    """A new conversation; a named model must be available (422 otherwise)."""
    if model:
        select_model(models(services), explicit=model)
    with services.uow() as db:
        return conversations.create(db, user_id=user_id, title=title, model=model)


def list_conversations(
    services: Services, *, user_id: str, limit: int, before: tuple[datetime, str] | None
) -> list[Row[Any]]:
    """The user's conversations, newest first."""
    with services.uow(autocommit=True) as db:
        return conversations.page(db, user_id=user_id, limit=limit, before=before)


def get_conversation(
    services: Services, *, user_id: str, conversation_id: str
) -> tuple[Row[Any], list[Row[Any]]]:
    """The conversation and its messages in order; ConversationNotFound for anyone else's."""
    row, history, _total = conversation_with_total(services, user_id=user_id, conversation_id=conversation_id)
    return row, history


def conversation_with_total(
    services: Services, *, user_id: str, conversation_id: str
) -> tuple[Row[Any], list[Row[Any]], int]:
    """The conversation, its messages, and what its replies were charged so far (micro-credits)."""
    with services.uow(autocommit=True) as db:
        row = conversations.get(db, user_id=user_id, conversation_id=conversation_id)
        if row is None:
            raise ConversationNotFound(conversation_id)
        history = conversations.history(db, conversation_id=conversation_id)
        job_ids = {message.job_id for message in history if message.job_id}
        total = 0
        if job_ids:
            # The jobs' own charges (a canceled reply paid what it delivered), each job once.
            charged = select(func.coalesce(func.sum(jobs.c.cost_charged), 0)).where(
                jobs.c.id.in_(job_ids), jobs.c.user_id == user_id
            )
            total = int(db.execute(charged).scalar_one())
        return row, history, total


@dataclass(frozen=True)
class _TurnContext:
    """What pricing a new turn needs, read in one go: the conversation, the user's preferences, the
    token bound of its messages, and its turns still open (job id, position, max_tokens) in order."""

    conversation: Row[Any]
    preferences: dict[str, Any]
    bound: int
    open_turns: list[Row[Any]]


def _turn_context(services: Services, *, user_id: str, conversation_id: str) -> _TurnContext:
    with services.uow(autocommit=True) as db:
        row = db.execute(
            select(conversations_table, users.c.preferences)
            .join(users, users.c.id == conversations_table.c.user_id)
            .where(conversations_table.c.id == conversation_id, conversations_table.c.user_id == user_id)
        ).first()
        if row is None:
            raise ConversationNotFound(conversation_id)
        waiting = list(
            db.execute(
                select(
                    jobs.c.id,
                    messages.c.position,
                    jobs.c.params["max_tokens"].as_integer().label("max_tokens"),
                )
                .select_from(messages.join(jobs, messages.c.job_id == jobs.c.id))
                .where(
                    messages.c.conversation_id == conversation_id,
                    messages.c.role == "user",
                    jobs.c.status.in_([QUEUED_SQL, RUNNING_SQL]),
                )
                .order_by(messages.c.position)
            ).all()
        )
        bound = conversations.prompt_bound(db, row)
    preferences = {**DEFAULT_PREFERENCES, **(row.preferences or {})}
    return _TurnContext(row, preferences, bound, waiting)


def post_message(services: Services, command: PostMessage) -> Row[Any]:
    """Store the message and hold the turn in one transaction, then enqueue; the reply lands when the
    job settles. A turn sent while the previous reply runs starts when that reply ends.

    Pricing reads the conversation's kept token bound, not its messages: the POST costs the same on
    the hundredth turn as on the first."""
    settings = services.settings
    if command.idempotency_key:
        existing = find_by_key(services, _job_command(command, params={}))
        if existing is not None:
            return existing
    turn = _turn_context(services, user_id=command.user_id, conversation_id=command.conversation_id)
    if turn.open_turns and command.on_busy == "reject":
        raise ConversationBusy("the previous reply in this conversation is still running")
    spec = select_model(
        models(services),
        explicit=command.model,
        conversation=turn.conversation.model,
        user_default=turn.preferences.get("default_chat_model"),
        cost_mode=turn.preferences.get("cost_mode", "balanced"),
    )
    max_tokens = command.max_tokens or min(settings.CHAT_DEFAULT_MAX_TOKENS, spec.context_length // 2)
    room = spec.context_length - max_tokens
    message = Turn(role="user", content=command.content)
    if max_tokens >= spec.context_length or token_bound([message]) > room:
        raise QuoteError(
            f"the message and max_tokens don't fit {spec.id}'s context of {spec.context_length} tokens"
        )
    # Bytes bound any byte-level tokenizer's count; a pending reply's tokens are up to 4 bytes each.
    pending = sum(4 * int(open_turn.max_tokens or 0) for open_turn in turn.open_turns)
    prompt_tokens = min(token_bound([message]) + turn.bound + pending, room)
    job_id = conversations.new_id()
    conversation_id = turn.conversation.id
    try:
        # One money unit: the message, its turn's positions, the hold and the job commit together, or
        # nothing does (a refused hold leaves no orphan message).
        with services.uow(account_of=command.user_id) as db:
            slot = conversations.reserve_turn(
                db, conversation_id=conversation_id, job_id=job_id, message=message
            )
            message_id = conversations.add_message(
                db,
                conversation_id=conversation_id,
                position=slot.message_position,
                role="user",
                content=command.content,
                model=spec.id,
                job_id=job_id,
                counted=True,
            )
            params = {
                "conversation_id": conversation_id,
                "message_id": message_id,
                "content": command.content,
                "message_position": slot.message_position,
                "reply_position": slot.reply_position,
                "model": spec.id,
                "max_tokens": max_tokens,
                "prompt_tokens": prompt_tokens,
                "pricing": dict(spec.pricing),
                "price_version": spec.price_version,
                "queue": work_queue(spec),
                "time_limit_s": settings.INTERACTIVE_TIME_LIMIT_S,
            }
            after = turn.open_turns[-1].id if turn.open_turns else None  # the latest turn still open
            row = insert_job(
                db, services, _job_command(command, params=params, after_job_id=after, job_id=job_id)
            )
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key made the turn first: answer its job.
        existing = (
            find_by_key(services, _job_command(command, params={})) if command.idempotency_key else None
        )
        if existing is None:
            raise
        return existing
    start_job(services, row)
    return row


def _job_command(
    command: PostMessage,
    *,
    params: dict[str, Any],
    after_job_id: str | None = None,
    job_id: str | None = None,
) -> CreateJob:
    return CreateJob(
        job_id=job_id,
        user_id=command.user_id,
        kind="chat",
        params=params,
        idempotency_key=command.idempotency_key,
        api_key_id=command.api_key_id,
        daily_credit_limit=command.daily_credit_limit,
        request=command.request(),
        after_job_id=after_job_id,
        dry_run=command.dry_run,
    )


def message_view(row: Row[Any]) -> dict[str, Any]:
    """A message as the API shows it."""
    return {column.name: getattr(row, column.name) for column in messages.c if column.name != "embedding"}
