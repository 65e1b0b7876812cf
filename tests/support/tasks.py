"""Test-only tasks, loaded by workers started with WORKER_EXTRA_TASK_MODULES=tests.support.tasks."""

from __future__ import annotations

import os
import signal
from typing import Any

import celeryconfig
from workers.app import queue_task


def _make_where(queue: str) -> Any:
    def where(self: Any, *_previous: Any) -> dict[str, Any]:
        """Record which queue delivered this step of a chain, and the consuming process."""
        delivered = (self.request.delivery_info or {}).get("routing_key")
        self.services.redis.rpush(f"test:where:{self.request.root_id}", f"{queue}:{delivered}")
        return {"queue": queue, "delivered_from": delivered, "pid": os.getpid()}

    where.__name__ = "where"
    return queue_task(queue)(where)


WHERE = {queue: _make_where(queue) for queue in celeryconfig.QUEUES}


@queue_task("critical")
def die_hard(self: Any, marker: str) -> None:
    """Count the execution, then kill our own pool process: a poisoned message."""
    self.services.redis.incr(f"test:die_hard:{marker}")
    os.kill(os.getpid(), signal.SIGKILL)
