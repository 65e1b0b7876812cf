"""The Celery application and `queue_task`, the decorator every task module uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery

import celeryconfig
from runtime.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

# workers.watchdog holds no task: it is loaded for its worker_ready hook (the consume watchdog).
TASK_MODULES = [
    "workers.maintenance",
    "workers.jobs",
    "workers.payments",
    "workers.search",
    "workers.notify",
    "workers.watchdog",
]
EXTRA_MODULES = [name.strip() for name in get_settings().WORKER_EXTRA_TASK_MODULES.split(",") if name.strip()]

celery_app = Celery(
    "creditflow", task_cls="workers.base:CreditflowTask", include=TASK_MODULES + EXTRA_MODULES
)
celery_app.config_from_object(celeryconfig)


def queue_task(queue: str, **options: Any) -> Callable[[F], Any]:
    """Register a task named `creditflow.<queue>.<function>`: routed to `queue` by name."""
    if queue not in celeryconfig.QUEUE_LIMITS:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(celeryconfig.QUEUES)}")
    soft, hard = celeryconfig.QUEUE_LIMITS[queue]

    def decorate(fn: F) -> Any:
        name = f"creditflow.{queue}.{fn.__name__}"
        defaults = {"soft_time_limit": soft, "time_limit": hard, "bind": True}
        return celery_app.task(name=name, **{**defaults, **options})(fn)

    return decorate


def money_step(queue: str = "critical", *, max_retries: int = 10, **options: Any) -> Callable[[F], Any]:
    """A task that leaves money unresolved if it gives up: any error retries it (backoff, jitter), and
    one that exhausts its retries lands in the dead letters for an operator."""
    return queue_task(
        queue,
        max_retries=max_retries,
        autoretry_for=(Exception,),
        dead_letter_on_failure=True,
        ignore_result=True,
        **options,
    )
