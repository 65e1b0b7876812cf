"""Maintenance queue tasks, plus a `ping` on every queue for health checks and smoke tests."""

from __future__ import annotations

import os
import time
from typing import Any

import celeryconfig
from workers.app import queue_task


def _make_ping(queue: str) -> Any:
    def ping(self: Any, payload: str = "") -> dict[str, Any]:
        """Answer with the queue and worker that consumed this message."""
        return {"queue": queue, "pid": os.getpid(), "hostname": self.request.hostname, "payload": payload}

    ping.__name__ = "ping"
    return queue_task(queue)(ping)


PINGS = {queue: _make_ping(queue) for queue in celeryconfig.QUEUES}


@queue_task("maintenance")
def heartbeat(self: Any) -> float:
    """Beat's liveness mark: the time beat last got a task through to a worker."""
    now = time.time()
    self.services.redis.set("creditflow:beat:last", now, ex=300)
    return now
