"""Test-only tasks, loaded by workers started with WORKER_EXTRA_TASK_MODULES=tests.support.tasks."""

from __future__ import annotations

import os
import signal
from typing import Any

from celery.signals import task_success

import celeryconfig
from orchestration.jobs.kinds import JobKind, Quote, register
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


def die_after_run_key(job_id: str) -> str:
    """Set this key before a job runs: its `run` is killed after recording its outcome, before the ack."""
    return f"test:die-after-run:{job_id}"


@task_success.connect
def _die_after_run(sender: Any = None, result: Any = None, **_kwargs: Any) -> None:
    # task_success fires in the pool process once `run` returned (its outcome recorded, the chain's
    # settle sent) and before the main process acks the message: dying here is dying between the two.
    name = str(getattr(sender, "name", ""))
    if not (name.endswith(".run") and isinstance(result, str)):
        return
    if sender.services.redis.delete(die_after_run_key(result)):
        os.kill(os.getpid(), signal.SIGKILL)
