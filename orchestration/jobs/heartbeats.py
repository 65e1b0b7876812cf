"""Heartbeats of running jobs: one thread per worker process refreshes all of its jobs at once.

Every `JOB_HEARTBEAT_S` the thread writes `heartbeat_at`, the cost booked so far and the last progress
of each job this process runs (one executemany), and reads back what the database knows that the step
must act on: a cancel (the Redis flag may have been lost) and whether the job is still ours (a
redelivered message took it over). A job whose heartbeat is older than `JOB_HEARTBEAT_TIMEOUT_S`
lost its worker: the reaper ends it, and a cancel ends it at once (orchestration/jobs/reaper.py, jobs.py).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select, update

from orchestration.services import Services
from orchestration.tables import RUNNING_SQL, jobs

if TYPE_CHECKING:
    from orchestration.context import RunContext

log = logging.getLogger(__name__)

_BEAT = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job_id"),
        jobs.c.claim == bindparam("b_token", type_=jobs.c.claim.type),
        jobs.c.status == RUNNING_SQL,
        # Once the step recorded its outcome, its cost and progress are final: a beat that read them
        # earlier (and waited for a connection meanwhile) must not write the older, lower values back.
        jobs.c.run_completed.is_(False),
    )
    .values(
        heartbeat_at=bindparam("b_now", type_=jobs.c.heartbeat_at.type),
        cost_running=bindparam("b_spent", type_=jobs.c.cost_running.type),
        progress=bindparam("b_progress", type_=jobs.c.progress.type),
    )
)


@dataclass(frozen=True)
class Beating:
    """One running job: the claim it runs under, and the step's context the beat reads and informs."""

    token: str
    context: RunContext

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.context.job_id


class Heartbeats:
    """The jobs this process runs, refreshed together by one daemon thread (started on first use)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._jobs: dict[str, Beating] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, beating: Beating) -> None:
        """Start refreshing a job's heartbeat (its claim wrote the first one)."""
        with self._lock:
            # By claim, not job: a redelivery may take a job over in the very process still running it,
            # and the attempt that lost it must neither displace nor, when it ends, remove the new one.
            self._jobs[beating.token] = beating
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="job-heartbeats", daemon=True)
                self._thread.start()

    def unregister(self, token: str) -> None:
        """Stop refreshing the attempt that runs under this claim (its step returned or raised)."""
        with self._lock:
            self._jobs.pop(token, None)

    def beat_now(self) -> None:
        """Refresh every registered job now (tests, and before a process exits)."""
        with self._lock:
            running = list(self._jobs.values())
        if running:
            self._beat(running)

    def _loop(self) -> None:
        while not self._wake.wait(self.services.settings.JOB_HEARTBEAT_S):
            try:
                self.beat_now()
            except Exception:  # a database blip: the next beat tries again (the timeout is 3+ beats)
                log.warning("job heartbeat failed; retrying next period", exc_info=True)

    def _beat(self, running: list[Beating]) -> None:
        now = datetime.now(UTC)
        rows = []
        for beating in running:
            spent, last_progress = beating.context.report()
            rows.append(
                {
                    "b_job_id": beating.job_id,
                    "b_token": beating.token,
                    "b_now": now,
                    "b_spent": spent,
                    "b_progress": last_progress,
                }
            )
        with self.services.uow() as db:
            db.execute(_BEAT, rows)
            found = db.execute(
                select(jobs.c.id, jobs.c.claim, jobs.c.status, jobs.c.cancel_requested).where(
                    jobs.c.id.in_([beating.job_id for beating in running])
                )
            ).all()
        by_id = {row.id: row for row in found}
        for beating in running:
            row = by_id.get(beating.job_id)
            beating.context.taken_over = row is None or row.claim != beating.token or row.status != "running"
            beating.context.cancel_in_database = bool(row is not None and row.cancel_requested)


_registry: dict[tuple[int, int], Heartbeats] = {}
_registry_lock = threading.Lock()


def heartbeats_of(services: Services) -> Heartbeats:
    """The heartbeat thread of these services in this process (a forked child gets its own)."""
    key = (os.getpid(), id(services))
    with _registry_lock:
        if key not in _registry:
            _registry[key] = Heartbeats(services)
        return _registry[key]
