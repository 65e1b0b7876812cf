"""Dead letters: tasks that exhausted their retries or redeliveries, kept for an operator to replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update

from orchestration.jobs import meters
from orchestration.services import Services
from orchestration.tables import dead_letters


class DeadLetterNotFound(LookupError):
    """No dead letter with this id."""


def record(
    services: Services,
    *,
    task_name: str,
    task_id: str,
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    reason: str,
    error: str,
    job_id: str | None = None,
) -> str:
    """Keep a task that will not run again by itself."""
    letter_id = uuid.uuid4().hex
    with services.uow() as db:
        db.execute(
            dead_letters.insert().values(
                id=letter_id,
                task_name=task_name,
                task_id=task_id,
                args=list(args),
                kwargs=dict(kwargs),
                reason=reason,
                error=error[:4000],
                job_id=job_id,
                created_at=datetime.now(UTC),
            )
        )
    meters.dead_letter(task_name, reason)
    return letter_id


def list_letters(
    services: Services, *, limit: int, before: tuple[datetime, str] | None = None
) -> list[Row[Any]]:
    """Dead letters, newest first, after an optional (created_at, id) cursor."""
    query = select(dead_letters)
    if before is not None:
        created, letter_id = before
        query = query.where(
            (dead_letters.c.created_at < created)
            | ((dead_letters.c.created_at == created) & (dead_letters.c.id < letter_id))
        )
    query = query.order_by(dead_letters.c.created_at.desc(), dead_letters.c.id.desc()).limit(limit)
    with services.uow(autocommit=True) as db:
        return list(db.execute(query).all())


def replay(services: Services, *, letter_id: str) -> Row[Any]:
    """Send the task again, by name (routing picks its queue), and count the replay."""
    with services.uow(autocommit=True) as db:
        letter = db.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).first()
    if letter is None:
        raise DeadLetterNotFound(letter_id)
    services.producer.send_task(letter.task_name, args=letter.args, kwargs=letter.kwargs)
    with services.uow() as db:
        return db.execute(
            update(dead_letters)
            .where(dead_letters.c.id == letter_id)
            .values(replayed_at=datetime.now(UTC), replays=dead_letters.c.replays + 1)
            .returning(*dead_letters.c)
        ).one()
