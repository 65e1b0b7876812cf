"""A delivery of `run` claims its job: a compare-and-set from queued (or a dead worker's running) to
running, refused while the job waits for another or for its user's running cap."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
# The same message redelivered takes the job over only from an attempt that stopped beating: a message
# past the broker's visibility timeout, or redelivered after a connection loss, can reach us while its
# first delivery still runs, and taking over would run the AI step twice (or fail a streamed reply).
_TAKE_OVER_LOST = _TAKE_OVER.where(jobs.c.heartbeat_at < bindparam("b_stale", type_=jobs.c.heartbeat_at.type))
_OWNER = select(jobs.c.claim, jobs.c.heartbeat_at).where(
    jobs.c.id == bindparam("b_job_id"),
    jobs.c.status == RUNNING_SQL,
    jobs.c.claim.startswith(bindparam("b_delivery", type_=jobs.c.claim.type)),
    jobs.c.run_completed.is_(False),
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
    takeovers = [f"{task_id}:{retries - 1}:"] if retries else []
    redelivery = f"{task_id}:{retries}:"
    if redelivered and not _owner_beats(services, job_id, redelivery):
        takeovers.append(redelivery)
    now = _now()
    params: dict[str, Any] = {"b_job_id": job_id, "b_token": token, "b_now": now}
    stale = now - timedelta(seconds=takeover_after_s(services))
    # The owner's account lock makes the running-jobs count exact: two claims of one user's jobs at
    # once (an I/O pool runs hundreds of deliveries side by side) would both see a free slot.
    with services.uow(account_of_job=job_id) as db:
        row = db.execute(_CLAIM, {**params, "b_cap": services.settings.JOB_MAX_RUNNING_PER_USER}).first()
        taken_over = recorded = False
        for delivery in takeovers if row is None else ():
            statement = _TAKE_OVER_LOST if delivery == redelivery else _TAKE_OVER
            row = db.execute(statement, {**params, "b_delivery": delivery, "b_stale": stale}).first()
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


def takeover_after_s(services: Services) -> float:
    """How long an attempt's heartbeat must have stood still before its own redelivery takes over:
    three missed beats (a live one beats every JOB_HEARTBEAT_S), within the reaper's timeout."""
    settings = services.settings
    return min(3 * settings.JOB_HEARTBEAT_S, settings.JOB_HEARTBEAT_TIMEOUT_S)


def _owner_beats(services: Services, job_id: str, delivery: str) -> bool:
    """Whether the attempt running the job under this same delivery is alive: its heartbeat moves.

    Watched for up to takeover_after_s and a beat (a pool child killed a moment ago beat just before):
    False once it stood still that long, or when no attempt of this delivery runs the job."""
    wait_s = takeover_after_s(services)
    deadline = time.monotonic() + wait_s + services.settings.JOB_HEARTBEAT_S
    first: Any = None
    while True:
        with services.uow(autocommit=True) as db:
            owner = db.execute(_OWNER, {"b_job_id": job_id, "b_delivery": delivery}).first()
        if owner is None:
            return False
        first = first or owner
        if tuple(owner) != tuple(first):
            log.warning("job %s: a redelivered run found its first delivery running; left to it", job_id)
            return True
        beat = owner.heartbeat_at if owner.heartbeat_at.tzinfo else owner.heartbeat_at.replace(tzinfo=UTC)
        if (_now() - beat).total_seconds() >= wait_s:
            return False
        if time.monotonic() > deadline:
            return True  # it beat in time (a clock far ahead of ours, say): never two attempts at once
        time.sleep(min(services.settings.JOB_HEARTBEAT_S / 2, 1.0))
