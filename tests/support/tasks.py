"""Test-only tasks, loaded by workers started with WORKER_EXTRA_TASK_MODULES=tests.support.tasks."""

from __future__ import annotations

import os
import signal
from typing import Any

import celeryconfig
from orchestration.kinds import JobKind, Quote, register
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


def _streaming_run(ctx: Any) -> dict[str, Any]:
    """Like a chat reply: text the user sees as it goes, one charge per piece."""
    import time

    pieces = int(ctx.params.get("pieces", 20))
    done = 0
    for piece in range(pieces):
        if ctx.should_stop():
            break
        time.sleep(int(ctx.params.get("sleep_ms", 100)) / 1000)
        ctx.charge(1000)
        ctx.token(f"piece {piece} ")
        done += 1
    return {"pieces": done, "stopped": ctx.stop_reason}


# A job kind whose partial output the user already saw: a lost worker must end it, not restart it.
STREAMING = register(
    JobKind(
        name="test-streaming",
        queue="interactive",
        price=lambda params: Quote(amount=1000 * int(params.get("pieces", 20)), price_version="test-1"),
        run=_streaming_run,
        route=lambda params: str(params.get("queue", "interactive")),
        restartable=False,
    )
)
