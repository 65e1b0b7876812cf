"""A worker that no longer consumes a queue it should, while it has free slots, stops itself so its
supervisor (`creditflow dev`, compose's `restart:`, Kubernetes) starts a fresh one.

After a broker reconnect a Celery worker can stay connected, answer pings and keep its heartbeats,
yet take nothing more from its queues (celery#8030, #10205, #10302). The consume canaries
(orchestration/jobs/canaries.py) show it: a canary still waiting while this worker had a free slot at
every look for a whole CANARY_TIMEOUT_S means this worker is not taking messages it could take. It then
asks itself for a warm shutdown (running tasks finish), and kills itself if that has not ended within
CANARY_STOP_GRACE_S: on a broker link that hangs the shutdown itself can wait on the dead link.
A saturated worker (every slot busy) is never stopped: its queue is slow, not forgotten.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from celery.signals import worker_ready
from celery.worker import state

import celeryconfig
from orchestration.bootstrap import process_services
from orchestration.jobs import canaries

log = logging.getLogger(__name__)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _watch_on_ready(sender: Any = None, **_kwargs: Any) -> None:
    settings = process_services().settings
    consumed = set(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)
    queues = [queue for queue in settings.canary_queues if queue in consumed]
    if queues:
        slots = int(sender.controller.concurrency)
        grace = settings.CANARY_STOP_GRACE_S or stop_grace_s(consumed)
        watch = threading.Thread(target=_watch, args=(queues, slots, time.time(), grace), daemon=True)
        watch.start()


def stop_grace_s(queues: set[str]) -> float:
    """How long a warm shutdown may take by default: the longest hard time limit of `queues` + 60 s."""
    limits = [celeryconfig.QUEUE_LIMITS[queue][1] for queue in queues if queue in celeryconfig.QUEUE_LIMITS]
    return float(max(limits, default=celeryconfig.LONGEST_TIME_LIMIT_S) + 60)


def _watch(queues: list[str], slots: int, ready_at: float, grace_s: float) -> None:
    settings = process_services().settings
    free_since: float | None = None  # since when every look found a free slot
    while True:
        time.sleep(settings.CANARY_INTERVAL_S)
        now = time.time()
        if len(state.active_requests) >= slots:
            free_since = None
            continue
        free_since = free_since or now
        try:
            waited = canaries.waiting_s(process_services(), queues, now=now)
        except Exception as exc:  # Redis away: nothing to judge by
            log.warning("consume watchdog: canaries unreadable: %s: %s", type(exc).__name__, exc)
            continue
        # Free at every look for a whole timeout while a canary waited all along: a consuming worker
        # would have taken it (canaries go first), so this one takes nothing.
        timeout = settings.CANARY_TIMEOUT_S
        free_long_enough = now - max(free_since, ready_at) >= timeout
        forgotten = [queue for queue, seconds in waited.items() if seconds > timeout and free_long_enough]
        if forgotten:
            log.error(
                "consume watchdog: %s not consumed for over %g s while this worker had free slots; "
                "stopping it (warm shutdown) so that its supervisor starts a fresh one",
                ", ".join(forgotten), settings.CANARY_TIMEOUT_S,
            )
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace_s)  # a daemon thread: a warm shutdown that ends takes it along
            log.error("consume watchdog: the warm shutdown did not end in %g s; killing this worker", grace_s)
            os.kill(os.getpid(), signal.SIGKILL)
            return
