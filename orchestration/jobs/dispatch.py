"""Sending sagas: after the job's commit, again by the reaper, and for jobs that waited for another.

A job may wait before it can start: a conversation's next turn until the previous reply ends
(`after_job_id`), or a user's job beyond `JOB_MAX_RUNNING_PER_USER` running ones on its queue
(`waiting_slot`). No worker slot is held while it waits: its claim refuses it (orchestration/jobs/steps.py)
and `wake_after` sends it when the job it waits for ends. A duplicate send is harmless (the claim is a
compare-and-set); a lost one is healed by the reaper.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update

from orchestration.jobs import sagas
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs

log = logging.getLogger(__name__)
OPEN = ("queued", "running")

_RUNNING_OF_USER = (
    select(func.count())
    .select_from(jobs)
    .where(
        jobs.c.user_id == bindparam("b_user_id"),
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.status == RUNNING_SQL,
    )
    .scalar_subquery()
)
_OLDEST_SLOT_WAITER = (
    select(jobs.c.id)
    .where(
        jobs.c.user_id == bindparam("b_user_id"),
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.status == QUEUED_SQL,
        jobs.c.waiting_slot.is_(True),
    )
    .order_by(jobs.c.priority, jobs.c.created_at)
    .limit(1)
    .scalar_subquery()
)
_SLOT_WAITER = and_(
    jobs.c.id == _OLDEST_SLOT_WAITER,
    jobs.c.waiting_slot.is_(True),
    bindparam("b_cap") > _RUNNING_OF_USER,
)
_FOLLOWER = and_(jobs.c.after_job_id == bindparam("b_job_id"), jobs.c.status == QUEUED_SQL)
# Marked sent at once: the reaper re-sends a ready job whose enqueued_at is NULL (what its refused
# claim left), and must not count a re-send of this one before ours lands.
_MARK_SENT = {"waiting_slot": False, "enqueued_at": bindparam("b_now", type_=jobs.c.enqueued_at.type)}
_RETURNED = (jobs.c.id, jobs.c.queue, jobs.c.priority)
# One statement per ended job, on every job's path: nearly always it finds nothing to send.
_WAKE_AFTER = update(jobs).where(or_(_FOLLOWER, _SLOT_WAITER)).values(_MARK_SENT).returning(*_RETURNED)
_WAKE_SLOT_WAITER = update(jobs).where(_SLOT_WAITER).values(_MARK_SENT).returning(*_RETURNED)


def send(services: Services, *, job_id: str, queue: str, priority: int) -> bool:
    """Enqueue the job's saga (after its commit); False if the broker refused (the reaper re-sends)."""
    try:
        sagas.send(services.producer, sagas.job_saga(queue), job_id, priority=priority)
    except Exception:  # the broker may be down: the job stays queued, the reaper re-sends it
        log.exception("could not enqueue job %s; the reaper will retry", job_id)
        with services.uow(autocommit=True) as db:
            db.execute(update(jobs).where(jobs.c.id == job_id).values(enqueued_at=None))
        return False
    return True


def resend(services: Services, *, job_id: str, queue: str, priority: int, counted: bool = True) -> bool:
    """Send the saga again (the reaper counts its re-sends, and gives up on a job after a few)."""
    if not send(services, job_id=job_id, queue=queue, priority=priority):
        return False
    values: dict[str, Any] = {"enqueued_at": datetime.now(UTC)}
    if counted:
        values["enqueues"] = jobs.c.enqueues + 1
    with services.uow(autocommit=True) as db:
        db.execute(update(jobs).where(jobs.c.id == job_id).values(values))
    return True


def predecessor_open(db: Any, after_job_id: str | None) -> bool:
    """Whether the job a new one waits for is still queued or running."""
    if after_job_id is None:
        return False
    status = db.execute(select(jobs.c.status).where(jobs.c.id == after_job_id)).scalar_one_or_none()
    return status in OPEN


def wake_after(services: Services, *, job_id: str, user_id: str, queue: str) -> int:
    """A job ended: send the jobs that waited for it, and its user's oldest job waiting for a slot."""
    with services.uow(autocommit=True) as db:
        woken = mark_woken(services, db, job_id=job_id, user_id=user_id, queue=queue)
    return send_woken(services, woken)


def mark_woken(services: Services, db: Any, *, job_id: str, user_id: str, queue: str) -> list[Any]:
    """Inside the ended job's own transaction: mark the jobs its end lets start (send them after commit)."""
    params = _slot_params(services, user_id=user_id, queue=queue) | {"b_job_id": job_id}
    return list(db.execute(_WAKE_AFTER, params).all())


def send_woken(services: Services, woken: list[Any]) -> int:
    """Send the sagas of jobs `mark_woken` marked, once their transaction committed; how many went out."""
    return sum(send(services, job_id=row.id, queue=row.queue, priority=row.priority) for row in woken)


def wake_slot_waiter(services: Services, *, user_id: str, queue: str) -> int:
    """If the user has a free slot on `queue`, send their oldest job waiting for one; 1 if sent."""
    return _send_marked(services, _WAKE_SLOT_WAITER, _slot_params(services, user_id=user_id, queue=queue))


def _slot_params(services: Services, *, user_id: str, queue: str) -> dict[str, Any]:
    cap = services.settings.JOB_MAX_RUNNING_PER_USER
    return {"b_user_id": user_id, "b_queue": queue, "b_cap": cap, "b_now": datetime.now(UTC)}


def _send_marked(services: Services, statement: Any, params: dict[str, Any]) -> int:
    # The statement marked the jobs sent (and no longer waiting) before their sagas go out; a claim
    # refused again marks them waiting again, and a lost send is healed by the reaper.
    with services.uow(autocommit=True) as db:
        ready = list(db.execute(statement, params).all())
    return send_woken(services, ready)
