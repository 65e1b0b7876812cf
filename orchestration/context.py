"""What a `run` step sees: its job, and ways to report progress, stream text and book cost."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from orchestration import progress
from orchestration.bootstrap import Services
from orchestration.tables import jobs
from runtime.db import transaction

CANCEL_CHECK_EVERY_S = 0.2


@dataclass
class RunContext:
    """The running job as its step sees it; amounts are micro-credits."""

    services: Services
    job_id: str
    user_id: str
    params: Mapping[str, Any]
    model: str | None
    held: int
    attempt: int
    spent: int = 0
    canceled: bool = False
    last_progress: dict[str, Any] | None = None
    _next_cancel_check: float = field(default=0.0, repr=False)

    def progress(self, stage: str, step: int, total: int, eta_s: float | None = None) -> None:
        """Publish a `progress` event (stage, step of total, percent, eta)."""
        percent = round(100 * step / total, 1) if total else None
        self.last_progress = {
            "stage": stage,
            "step": step,
            "total": total,
            "percent": percent,
            "eta_s": eta_s,
        }
        self._publish("progress", **self.last_progress)

    def token(self, text: str) -> None:
        """Publish a `token` event carrying a delta of streamed text."""
        self._publish("token", text=text)

    def charge(self, amount: int) -> int:
        """Book delivered cost (capped at the hold); return what is left of the hold."""
        if amount < 0:
            raise ValueError("a charge is never negative")
        self.spent = min(self.held, self.spent + amount)
        return self.held - self.spent

    def remaining(self) -> int:
        """Micro-credits of the hold not yet spent."""
        return self.held - self.spent

    def should_stop(self) -> bool:
        """True once the user canceled: the step returns what it has at its next check."""
        if self.canceled:
            return True
        now = time.monotonic()
        if now >= self._next_cancel_check:
            self._next_cancel_check = now + CANCEL_CHECK_EVERY_S
            self.canceled = progress.cancel_requested(self.services.redis, self.job_id)
        return self.canceled

    def restart_time_limit(self) -> None:
        """Waiting is not working: the job's time limit counts from now (e.g. after queueing behind
        a conversation's previous reply), so the reaper does not end it for time spent waiting."""
        with transaction(self.services.sessions) as session:
            session.execute(
                update(jobs)
                .where(jobs.c.id == self.job_id, jobs.c.status == "running")
                .values(started_at=datetime.now(UTC))
            )

    def _publish(self, kind: str, **fields: Any) -> None:
        progress.publish_job_event(
            self.services.redis, self.job_id, kind, held=self.held, spent=self.spent, **fields
        )
