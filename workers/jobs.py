"""The saga's tasks: `run` on each work queue, `settle` and `compensate` on critical."""

from __future__ import annotations

from typing import Any

from celery.exceptions import Ignore

from orchestration import dead_letters, steps
from orchestration.errors import RetryableError
from orchestration.kinds import load_kinds
from workers.app import queue_task

WORK_QUEUES = ("interactive", "agents", "images", "maintenance")
RUN_MAX_RETRIES = 5
COMPENSATE_MAX_RETRIES = 20

load_kinds()


def _backoff(retries: int, cap: int = 300) -> int:
    return int(min(cap, 2**retries))


def _dead_letter(task: Any, job_id: str, reason: str, exc: BaseException) -> None:
    dead_letters.record(
        task.services,
        task_name=task.name,
        task_id=task.request.id,
        args=[job_id],
        kwargs={},
        reason=reason,
        error=f"{type(exc).__name__}: {exc}",
        job_id=job_id,
    )


def _make_run(queue: str) -> Any:
    def run(self: Any, job_id: str) -> str:
        """Claim the job (compare-and-set), run its kind's step, record the outcome for settle."""
        token = f"{self.request.id}:{self.request.retries}"
        previous = f"{self.request.id}:{self.request.retries - 1}" if self.request.retries else None
        job = steps.claim(self.services, job_id=job_id, token=token, previous=previous)
        if job is None:
            raise Ignore()  # another delivery owns it, or it was canceled/ended: the chain stops here
        try:
            kept = steps.run(self.services, job, token=token)
        except RetryableError as exc:
            if self.request.retries >= self.max_retries:
                _dead_letter(self, job_id, "retries_exhausted", exc)
                raise
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        if not kept:
            raise Ignore()  # the reaper ended the job meanwhile; settling would change nothing
        return job_id

    run.__name__ = "run"
    return queue_task(queue, max_retries=RUN_MAX_RETRIES, ignore_result=True)(run)


RUNS = {queue: _make_run(queue) for queue in WORK_QUEUES}


@queue_task("critical", max_retries=10, ignore_result=True)
def settle(self: Any, job_id: str) -> str | None:
    """Capture the real cost and release the rest; retried on passing database/Redis errors."""
    try:
        return steps.settle(self.services, job_id=job_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            _dead_letter(self, job_id, "retries_exhausted", exc)
            raise
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, cap=60)) from exc


@queue_task("critical", max_retries=COMPENSATE_MAX_RETRIES, ignore_result=True)
def compensate(self: Any, job_id: str) -> bool:
    """Void the hold and fail the job; idempotent, retried with backoff until it succeeds."""
    try:
        _maybe_injected_fault(self, job_id)
        return steps.fail(
            self.services,
            job_id=job_id,
            code="step_failed",
            message="the job failed; its credit hold was released",
        )
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            _dead_letter(self, job_id, "retries_exhausted", exc)
            raise
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc


def _maybe_injected_fault(task: Any, job_id: str) -> None:
    # Tests make compensate fail N times by setting this counter; never enabled in production.
    if task.services.settings.FAULT_INJECTION_ENABLED:
        remaining = task.services.redis.decr(f"creditflow:faults:compensate:{job_id}")
        if remaining >= 0:
            raise RuntimeError(f"injected compensate failure ({remaining} more)")
