"""Base task: gives tasks their services and caps redeliveries of a poisoned message."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

import celeryconfig
from orchestration import dead_letters
from orchestration.bootstrap import Services, process_services

log = logging.getLogger(__name__)
SAGA_STEPS = frozenset({"run", "settle", "compensate"})


class CreditflowTask(Task):  # type: ignore[misc]
    """Every creditflow task: services per process, and a redelivery cap of our own."""

    abstract = True

    @property
    def services(self) -> Services:
        """Database, Redis and settings of this worker process (built after fork)."""
        return process_services()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._redelivery_cap_exceeded():
            self.on_redelivery_cap(args, kwargs)
            return None
        return super().__call__(*args, **kwargs)

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
        count = int(pipe.execute()[0])
        return count > self.services.settings.TASK_MAX_REDELIVERIES

    def on_redelivery_cap(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called instead of the task body once the cap is hit: dead-letter it; the message is acked."""
        cap = self.services.settings.TASK_MAX_REDELIVERIES
        log.error(
            "task %s[%s] dropped after %d redeliveries (args=%r)", self.name, self.request.id, cap, args
        )
        saga_step = self.name.rsplit(".", 1)[-1] in SAGA_STEPS
        dead_letters.record(
            self.services,
            task_name=self.name,
            task_id=self.request.id,
            args=list(args),
            kwargs=kwargs,
            reason="redelivery_cap",
            error=f"redelivered {cap} times; its process kept dying",
            job_id=str(args[0]) if saga_step and args else None,
        )
