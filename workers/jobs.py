"""The saga's tasks: `run` on each work queue (it settles in place when it can), `settle` and
`compensate` on critical."""

from __future__ import annotations

from typing import Any

from celery.exceptions import Ignore

from orchestration.errors import RetryableError
from orchestration.jobs import claims, compensation, steps
from workers.app import money_step, queue_task

WORK_QUEUES = ("interactive", "agents", "images", "local", "maintenance")
RUN_MAX_RETRIES = 5
COMPENSATE_MAX_RETRIES = 20


def _make_run(queue: str) -> Any:
    def run(self: Any, job_id: str) -> str:
        """Claim the job (compare-and-set), run its kind's step, record the outcome for settle."""
        delivery = self.request.delivery_info or {}
        job = claims.claim(
            self.services,
            job_id=job_id,
            task_id=self.request.id,
            retries=self.request.retries,
            redelivered=bool(delivery.get("redelivered")),
        )
        if job is None:
            raise Ignore()  # another delivery owns it, it waits, or it ended: the chain stops here
        if not steps.run(self.services, job):
            raise Ignore()  # the job was ended or taken over meanwhile; settling would change nothing
        if not _settle_in_place_refused(self, job_id) and steps.settle_in_place(self.services, job_id=job_id):
            # Settled here: the chain's next step (settle on critical) is not sent. Celery reads the
            # request's chain after the task returns; a failed in-place settle leaves it to critical.
            self.request.chain = None
        return job_id

    run.__name__ = "run"
    return queue_task(
        queue,
        max_retries=RUN_MAX_RETRIES,
        autoretry_for=(RetryableError,),
        ignore_result=True,
        saga_run=True,
    )(run)


RUNS = {queue: _make_run(queue) for queue in WORK_QUEUES}


@money_step(retry_backoff_max=60)
def settle(self: Any, job_id: str) -> str | None:
    """Capture the real cost and release the rest; retried on passing database/Redis errors."""
    return steps.settle(self.services, job_id=job_id)


@money_step(max_retries=COMPENSATE_MAX_RETRIES)
def compensate(self: Any, job_id: str) -> bool:
    """Void the hold and fail the job; idempotent, retried with backoff until it succeeds."""
    _maybe_injected_fault(self, job_id)
    return compensation.fail(
        self.services,
        job_id=job_id,
        code="step_failed",
        message="the job failed; its credit hold was released",
    )


def _maybe_injected_fault(task: Any, job_id: str) -> None:
    # Tests make compensate fail N times by setting this counter; never enabled in production.
    if task.services.settings.FAULT_INJECTION_ENABLED:
        remaining = task.services.redis.decr(f"creditflow:faults:compensate:{job_id}")
        if remaining >= 0:
            raise RuntimeError(f"injected compensate failure ({remaining} more)")


def _settle_in_place_refused(task: Any, job_id: str) -> bool:
    # Tests make N in-place settles fail by setting this counter (the critical queue's settle then
    # settles); never enabled in production.
    if not task.services.settings.FAULT_INJECTION_ENABLED:
        return False
    try:
        return bool(task.services.redis.decr(f"creditflow:faults:settle-in-place:{job_id}") >= 0)
    except Exception:  # a Redis outage under test is not a refusal
        return False
