"""A delivery of `run` claims its job: a compare-and-set from queued (or a dead worker's running) to
running, refused while the job waits for another or for its user's running cap."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, case, exists, func, select, update

from orchestration.jobs import dispatch
from orchestration.services import Services
from orchestration.tables import QUEUED_SQL, RUNNING_SQL, jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A job this delivery of `run` owns; `taken_over` if a redelivery took it from a dead worker."""

    id: str
    user_id: str
    kind: str
    params: dict[str, Any]
    model: str | None
    held: int
    attempt: int
    hold_id: str | None
    token: str
    started_at: datetime
    time_limit_s: int
    queue: str
    taken_over: bool = False
    cancel_requested: bool = False
    recorded: bool = False  # the run already finished and was recorded: only settlement is left


def _now() -> datetime:
    return datetime.now(UTC)


def claim_token(task_id: str, retries: int) -> str:
    """A claim: the delivery (task id and retry number) and a nonce of this process's attempt."""
    return f"{task_id}:{retries}:{uuid.uuid4().hex[:8]}"


# The hot statements are built once: building an UPDATE with its CASE expressions costs more client
# CPU than sending it. Bound names differ from column names (SQLAlchemy reserves those for SET).
_previous = jobs.alias("previous")
_others = jobs.alias("others")
_PREDECESSOR_OPEN = exists().where(
    _previous.c.id == jobs.c.after_job_id, _previous.c.status.in_([QUEUED_SQL, RUNNING_SQL])
)
_RUNNING_OF_USER = (
    select(func.count())
    .select_from(_others)
    .where(
        _others.c.user_id == jobs.c.user_id, _others.c.queue == jobs.c.queue, _others.c.status == RUNNING_SQL
    )
    .scalar_subquery()
)
_CLAIMED_COLUMNS = (
    jobs.c.user_id,
    jobs.c.kind,
    jobs.c.params,
    jobs.c.model,
    jobs.c.cost_held,
    jobs.c.attempts,
    jobs.c.hold_id,
    jobs.c.started_at,
    jobs.c.time_limit_s,
    jobs.c.queue,
    jobs.c.cancel_requested,
)
_CLAIM_SET = {
    "status": "running",
    "claim": bindparam("b_token", type_=jobs.c.claim.type),
    "attempts": jobs.c.attempts + 1,
    "started_at": case(
        (jobs.c.started_at.is_(None), bindparam("b_now", type_=jobs.c.started_at.type)),
        else_=jobs.c.started_at,
    ),
    "heartbeat_at": bindparam("b_now", type_=jobs.c.heartbeat_at.type),
    "waiting_slot": False,
}
# A queued job starts when nothing it waits for is open and its user has a free slot on its queue.
_CLAIM = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.status == QUEUED_SQL,
        ~_PREDECESSOR_OPEN,
        bindparam("b_cap") > _RUNNING_OF_USER,
    )
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)
# A running job is taken over by its own delivery: a retry of our attempt (previous retry number), or
# the same message redelivered after its process died (same retry number, another nonce).
_TAKE_OVER = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.status == RUNNING_SQL,
        # Celery task ids are UUIDs: no LIKE wildcards to escape.
        jobs.c.claim.startswith(bindparam("b_delivery", type_=jobs.c.claim.type)),
        jobs.c.run_completed.is_(False),
    )
    .values(_CLAIM_SET)
    .returning(*_CLAIMED_COLUMNS)
)
# Our own delivery again after its run was recorded (its process died before the ack): the work is done
# and paid for by settlement, so nothing runs again and nothing is changed here.
_RECORDED = select(*_CLAIMED_COLUMNS, jobs.c.claim).where(
    jobs.c.id == bindparam("b_job_id"),
    jobs.c.status == RUNNING_SQL,
    jobs.c.run_completed.is_(True),
    jobs.c.claim.startswith(bindparam("b_delivery", type_=jobs.c.claim.type)),
)
# A queued job its claim refused: the delivery's message is consumed, so the job is unsent again
# (enqueued_at NULL: the reaper sends it once it is ready, if its wake-up is lost), and one that waits
# for no other job was refused for its user's slots (waiting_slot: the end of one of theirs sends it).
_REFUSED = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_job_id"), jobs.c.status == QUEUED_SQL)
    .values(enqueued_at=None, waiting_slot=~_PREDECESSOR_OPEN)
    .returning(jobs.c.user_id, jobs.c.queue, jobs.c.waiting_slot)
)


def claim(
    services: Services, *, job_id: str, task_id: str, retries: int, redelivered: bool = False
) -> Claimed | None:
    """Compare-and-set `queued -> running`, or take over our own delivery; None if it can't run now.

    A job that waits for a conversation's previous turn, or for one of its user's slots, is left
    queued (marked `waiting_slot` for the latter) and is sent again when what it waits for ends."""
    token = claim_token(task_id, retries)
    params: dict[str, Any] = {"b_job_id": job_id, "b_token": token, "b_now": _now()}
    takeovers = [f"{task_id}:{retries - 1}:"] if retries else []
    if redelivered:
        takeovers.append(f"{task_id}:{retries}:")
    # The owner's account lock makes the running-jobs count exact: two claims of one user's jobs at
    # once (an I/O pool runs hundreds of deliveries side by side) would both see a free slot.
    with services.uow(account_of_job=job_id) as db:
        row = db.execute(_CLAIM, {**params, "b_cap": services.settings.JOB_MAX_RUNNING_PER_USER}).first()
        taken_over = recorded = False
        for delivery in takeovers if row is None else ():
            row = db.execute(_TAKE_OVER, {**params, "b_delivery": delivery}).first()
            if row is not None:
                taken_over = delivery.endswith(f":{retries}:")
                break
            row = db.execute(_RECORDED, {"b_job_id": job_id, "b_delivery": delivery}).first()
            if row is not None:
                token, recorded = row.claim, True
                break
        refused = db.execute(_REFUSED, {"b_job_id": job_id}).first() if row is None else None
    if refused is not None and refused.waiting_slot:
        # Its user's slots are taken: one of their jobs may have ended since our claim counted it.
        dispatch.wake_slot_waiter(services, user_id=refused.user_id, queue=refused.queue)
    if row is None:
        return None
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
    return Claimed(
        job_id,
        row.user_id,
        row.kind,
        dict(row.params),
        row.model,
        row.cost_held,
        row.attempts,
        row.hold_id,
        token,
        started,
        row.time_limit_s,
        row.queue,
        taken_over,
        # A cancel that came while this attempt waited (a retry's countdown) is in the row even when
        # Redis lost its flag: the step must not start work it would be charged for.
        bool(row.cancel_requested),
        recorded,
    )
