"""Conversations and their messages in the database (a turn = the user's message and its reply)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from assistant.tables import conversations, messages
from assistant.transcript import Turn, turn_bound


@dataclass(frozen=True)
class TurnSlot:
    """Positions reserved for one turn: the user's message, then the reply when it settles."""

    message_position: int
    reply_position: int


def _now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh opaque id."""
    return uuid.uuid4().hex


def create(session: Connection, *, user_id: str, title: str | None, model: str | None) -> Row[Any]:
    """A new, empty conversation."""
    now = _now()
    return session.execute(
        conversations.insert()
        .values(
            id=new_id(),
            user_id=user_id,
            title=title,
            model=model,
            prompt_bound=0,
            created_at=now,
            updated_at=now,
        )
        .returning(*conversations.c)
    ).one()


def get(session: Connection, *, user_id: str, conversation_id: str) -> Row[Any] | None:
    """The user's conversation, or None (someone else's is as unknown as a missing one)."""
    return session.execute(
        select(conversations).where(conversations.c.id == conversation_id, conversations.c.user_id == user_id)
    ).first()


def page(
    session: Connection, *, user_id: str, limit: int, before: tuple[datetime, str] | None = None
) -> list[Row[Any]]:
    """The user's conversations, newest first, after an optional (created_at, id) cursor."""
    query = select(conversations).where(conversations.c.user_id == user_id)
    if before is not None:
        created, last_id = before
        query = query.where(
            (conversations.c.created_at < created)
            | ((conversations.c.created_at == created) & (conversations.c.id < last_id))
        )
    order = (conversations.c.created_at.desc(), conversations.c.id.desc())
    return list(session.execute(query.order_by(*order).limit(limit)).all())


def history(session: Connection, *, conversation_id: str, before: int | None = None) -> list[Row[Any]]:
    """The conversation's messages in order (those before `position` when given)."""
    query = select(messages).where(messages.c.conversation_id == conversation_id)
    if before is not None:
        query = query.where(messages.c.position < before)
    return list(session.execute(query.order_by(messages.c.position)).all())


def recent(session: Connection, *, conversation_id: str, before: int, limit: int) -> list[Row[Any]]:
    """The newest `limit` messages before `position`, in order: id, position, role, content only."""
    query = (
        select(messages.c.id, messages.c.position, messages.c.role, messages.c.content)
        .where(messages.c.conversation_id == conversation_id, messages.c.position < before)
        .order_by(messages.c.position.desc())
        .limit(limit)
    )
    return list(reversed(session.execute(query).all()))


def as_turns(rows: list[Row[Any]]) -> list[Turn]:
    """Messages as provider turns."""
    return [Turn(role=row.role, content=row.content) for row in rows if row.content]


def reserve_turn(
    session: Connection, *, conversation_id: str, job_id: str | None = None, message: Turn | None = None
) -> TurnSlot:
    """Take the next two positions atomically, for the turn of `job_id` whose user `message` is counted
    into the conversation's prompt bound (the message itself is added with `counted=False`)."""
    values: dict[str, Any] = {"positions": conversations.c.positions + 2, "updated_at": _now()}
    if job_id is not None:
        values["last_job_id"] = job_id
    if message is not None:
        values["prompt_bound"] = conversations.c.prompt_bound + turn_bound(message)
    row = session.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(values).returning(
            conversations.c.positions
        )
    ).one()
    return TurnSlot(row.positions - 2, row.positions - 1)


def prompt_bound(session: Connection, conversation: Row[Any]) -> int:
    """The token bound of the conversation's messages (counted once from them if it never was)."""
    if conversation.prompt_bound is not None:
        return int(conversation.prompt_bound)
    total = sum(turn_bound(turn) for turn in as_turns(history(session, conversation_id=conversation.id)))
    session.execute(
        update(conversations)
        .where(conversations.c.id == conversation.id, conversations.c.prompt_bound.is_(None))
        .values(prompt_bound=total)
    )
    return total


def add_message(
    session: Connection,
    *,
    conversation_id: str,
    position: int,
    role: str,
    content: str,
    model: str | None = None,
    job_id: str | None = None,
    usage: dict[str, int] | None = None,
    cost: int | None = None,
    finish_reason: str | None = None,
    counted: bool = False,
) -> str:
    """Append a message at its reserved position; returns its id. `counted`: the turn's reservation
    counted it into the conversation's prompt bound already; else it is added to the bound here."""
    message_id = new_id()
    session.execute(
        messages.insert().values(
            id=message_id,
            conversation_id=conversation_id,
            position=position,
            role=role,
            content=content,
            model=model,
            job_id=job_id,
            usage=usage,
            cost=cost,
            finish_reason=finish_reason,
            created_at=_now(),
        )
    )
    if not counted and content:
        session.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(prompt_bound=conversations.c.prompt_bound + turn_bound(Turn(role=role, content=content)))
        )
    return message_id
