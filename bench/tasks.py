"""No-op tasks for the bare-Celery floor (loaded with WORKER_EXTRA_TASK_MODULES=bench.tasks)."""

from __future__ import annotations

from typing import Any

from workers.app import queue_task


@queue_task("interactive")
def noop(self: Any) -> None:
    """Nothing: the floor's first step, on the same queue as a job's `run`."""


@queue_task("critical")
def noop_last(self: Any) -> str:
    """Nothing: the floor's second step, on the same queue as `settle`."""
    return "ok"
