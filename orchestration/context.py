"""What a `run` step sees: its job, and ways to report progress, stream text and book cost."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from orchestration.jobs import meters, progress
from orchestration.jobs.coalescing import TokenCoalescer
from orchestration.services import Services

log = logging.getLogger(__name__)
CANCEL_CHECK_EVERY_S = 0.2
STOP_REASONS = ("canceled", "time_limit", "lost")


@dataclass
class RunContext:
    """The running job as its step sees it; amounts are micro-credits.

    `should_stop()` is the step's one question: it turns true once the user canceled (the Redis flag,
    or the database's when Redis is down), the job's time limit passed, or another delivery took the
    job over; `stop_reason` says which. The step then returns what it has, and is charged for that.
    """

    services: Services
    job_id: str
    user_id: str
    params: Mapping[str, Any]
    model: str | None
    held: int
    attempt: int
    deadline: float = float("inf")  # time.monotonic() at which the job's time limit passes
    spent: int = 0
    stop_reason: str | None = None
    last_progress: dict[str, Any] | None = None
    cancel_in_database: bool = False  # set by the heartbeat (orchestration/jobs/heartbeats.py)
    taken_over: bool = False  # set by the heartbeat: another delivery owns the job now
    kind: str = ""
    _started: float = field(default_factory=time.monotonic, repr=False)
    _first_token: bool = field(default=False, repr=False)
    _next_cancel_check: float = field(default=0.0, repr=False)
    _tokens: TokenCoalescer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        settings = self.services.settings
        self._tokens = TokenCoalescer(
            lambda text: self._publish("token", text=text),
            settings.TOKEN_COALESCE_MS / 1000,
            max_window_s=settings.TOKEN_COALESCE_MAX_MS / 1000,
            streams_at_base=settings.TOKEN_COALESCE_STREAMS,
        )

    @property
    def canceled(self) -> bool:
        """Whether the step stopped because the user canceled."""
        return self.stop_reason == "canceled"

    def progress(
        self, stage: str, step: int, total: int, eta_s: float | None = None, **extra: Any
    ) -> None:
        """Publish a `progress` event (stage, step of total, percent, eta, and a kind's own fields such
        as an image job's `queue_position` or `preview_url`)."""
        percent = round(100 * step / total, 1) if total else None
        self.last_progress = {
            "stage": stage,
            "step": step,
            "total": total,
            "percent": percent,
            "eta_s": eta_s,
            **extra,
        }
        self._tokens.flush()  # the text before this progress goes out first
        self._publish("progress", **self.last_progress)

    def token(self, text: str) -> None:
        """Stream a delta of text: `token` events coalesce what arrives within a window (TOKEN_COALESCE_*)."""
        if not self._first_token:
            self._first_token = True
            meters.first_token(self.kind, self.model, time.monotonic() - self._started)
        self._tokens.add(text)

    def flush(self) -> None:
        """Publish any text still waiting for its window (the step ended: no longer counted as streaming)."""
        self._tokens.close()

    def charge(self, amount: int) -> int:
        """Book delivered cost (capped at the hold); return what is left of the hold."""
        if amount < 0:
            raise ValueError("a charge is never negative")
        self.spent = min(self.held, self.spent + amount)
        return self.held - self.spent

    def book(self, total: int) -> None:
        """Set the cost delivered so far (capped at the hold): a reply's running estimate is replaced by
        the provider's usage when it arrives, up or down, so the charge is exactly what it reports."""
        if total < 0:
            raise ValueError("a cost is never negative")
        self.spent = min(self.held, total)

    def remaining(self) -> int:
        """Micro-credits of the hold not yet spent."""
        return self.held - self.spent

    def should_stop(self) -> bool:
        """True once the job must end: canceled, out of time, or taken over (see `stop_reason`)."""
        if self.stop_reason is not None:
            return True
        now = time.monotonic()
        if self.taken_over:
            self.stop_reason = "lost"
        elif now >= self.deadline:
            self.stop_reason = "time_limit"
        elif self.cancel_in_database or (now >= self._next_cancel_check and self._cancel_flagged()):
            self.stop_reason = "canceled"
        if now >= self._next_cancel_check:
            self._next_cancel_check = now + CANCEL_CHECK_EVERY_S
        return self.stop_reason is not None

    def _cancel_flagged(self) -> bool:
        # Redis holds nothing money depends on: when it is down the flag is unknown, and the heartbeat
        # brings the database's `cancel_requested` within one period instead.
        try:
            return progress.cancel_requested(self.services.redis, self.job_id)
        except redis.RedisError as exc:
            log.warning("cancel flag of job %s unreadable (%s); relying on the database", self.job_id, exc)
            return False

    def report(self) -> tuple[int, dict[str, Any] | None]:
        """What the heartbeat records: the cost booked so far and the last progress."""
        return self.spent, self.last_progress

    def _publish(self, kind: str, **fields: Any) -> None:
        progress.publish_job_event(
            self.services.redis, self.job_id, kind, held=self.held, spent=self.spent, **fields
        )
