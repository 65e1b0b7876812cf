"""Base task: services per process, one retry policy, dead letters, and a redelivery cap.

Retry policy (warehouse's habit: declared on the task, applied here): a task lists the errors that
may pass (`autoretry_for`) and Celery retries them with exponential backoff and full jitter
(`retry_backoff`, `retry_jitter`), up to `max_retries`. What happens after the last try depends on
what the task is:
- a saga's `run`: its chain's errback compensates (the job fails, its hold is released); nothing is
  left for an operator, so nothing is dead-lettered;
- `settle`, `compensate` (and payment fulfilment): money is left unresolved, so the task is recorded in
  the dead letters (`dead_letter_on_failure`), where an operator can replay it once the cause is fixed.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task

import celeryconfig
from orchestration.bootstrap import process_services
from orchestration.jobs import compensation, dead_letters, steps
from orchestration.services import Services

log = logging.getLogger(__name__)


class CreditflowTask(Task):  # type: ignore[misc]
    """Every creditflow task: services per process, the retry policy, a redelivery cap of our own."""

    abstract = True
    retry_backoff = True
    retry_backoff_max = 300
    retry_jitter = True
    # True where a failure after the last retry leaves money unresolved (an operator must act).
    dead_letter_on_failure = False
    # True for a saga's `run`: a message that kills its process every time fails its job instead.
    saga_run = False

    @property
    def services(self) -> Services:
        """Database, Redis and settings of this worker process (built after fork)."""
        return process_services()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._redelivery_cap_exceeded():
            self.on_redelivery_cap(args, kwargs)
            return None
        return super().__call__(*args, **kwargs)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry; a saga's `run` first moves its job's heartbeat past the countdown, so the
        reaper doesn't take a job waiting for its retry for one whose worker died."""
        if self.saga_run and self.request.args and self.request.retries < (self.max_retries or 0):
            countdown = float(kwargs.get("countdown") or 0)
            steps.postpone_heartbeat(self.services, job_id=str(self.request.args[0]), seconds=countdown)
        return super().retry(*args, **kwargs)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """After the last retry: keep the task for an operator when money depends on it."""
        if not self.dead_letter_on_failure:
            return
        dead_letters.record(
            self.services,
            task_name=self.name,
            task_id=task_id,
            args=list(args),
            kwargs=dict(kwargs),
            reason="retries_exhausted",
            error=f"{type(exc).__name__}: {exc}",
            job_id=str(args[0]) if args else None,
        )

    def _redelivery_cap_exceeded(self) -> bool:
        # Redis marks a restored message `redelivered` but never counts, and a child that dies
        # on the same message every time would loop forever: count deliveries per attempt.
        delivery = self.request.delivery_info or {}
        if not delivery.get("redelivered"):
            return False
        key = f"creditflow:redeliveries:{self.request.id}:{self.request.retries}"
        pipe = self.services.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, celeryconfig.VISIBILITY_TIMEOUT_S * 2)
        try:
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            # Uncounted, the task runs (its claim still decides): raising here, before the body, failed
            # a `run` outright (its chain's errback compensated) while only REDIS_URL was down.
            log.warning("redeliveries of %s[%s] not counted: %s", self.name, self.request.id, exc)
            return False
        return count > self.services.settings.TASK_MAX_REDELIVERIES

    def on_redelivery_cap(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called instead of the task body once the cap is hit; the message is acked."""
        cap = self.services.settings.TASK_MAX_REDELIVERIES
        log.error(
            "task %s[%s] dropped after %d redeliveries (args=%r)", self.name, self.request.id, cap, args
        )
        if self.saga_run and args:
            compensation.fail(
                self.services,
                job_id=str(args[0]),
                code="worker_crashed",
                message=f"the job's worker process died {cap + 1} times running it; nothing was charged",
            )
            return
        dead_letters.record(
            self.services,
            task_name=self.name,
            task_id=self.request.id,
            args=list(args),
            kwargs=kwargs,
            reason="redelivery_cap",
            error=f"redelivered {cap} times; its process kept dying",
            job_id=str(args[0]) if self.dead_letter_on_failure and args else None,
        )
