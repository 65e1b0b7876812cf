"""Consume canaries: is every queue still consumed? A worker can stay connected (heartbeats, pings
answered) yet take nothing from a queue after a broker reconnect (celery#8030, #10205, #10302).

Beat sends a no-op `creditflow.<queue>.canary` to each queue every CANARY_INTERVAL_S. Publishing one
records its time (`sent`) unless an older one is still waiting, so the mark is the oldest canary not
yet consumed; a worker that runs one clears it. A queue whose mark is older than CANARY_TIMEOUT_S is
`stalled`: no worker took a message from it for that long (none consumes it, or every slot was busy).
A queue with no mark has nothing outstanding: `ok`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.services import Services

PREFIX = "creditflow:canary:"
# A mark outlives any sensible timeout: a queue stalled for a day still shows, then it is forgotten.
MARK_TTL_S = 24 * 3600


def _sent_key(queue: str) -> str:
    return f"{PREFIX}{queue}:sent"


def _consumed_key(queue: str) -> str:
    return f"{PREFIX}{queue}:consumed"


def record_sent(services: Services, queue: str, *, now: float) -> None:
    """A canary was published to `queue`: mark the time unless an older one is still waiting."""
    services.redis.set(_sent_key(queue), repr(now), nx=True, ex=MARK_TTL_S)


def record_consumed(services: Services, queue: str, *, now: float) -> None:
    """A worker ran `queue`'s canary: nothing is outstanding on it."""
    with services.redis.pipeline(transaction=True) as pipe:
        pipe.delete(_sent_key(queue))
        pipe.set(_consumed_key(queue), repr(now), ex=MARK_TTL_S)
        pipe.execute()


def waiting_s(services: Services, queues: Iterable[str], *, now: float) -> dict[str, float]:
    """Seconds the oldest unconsumed canary of each queue has waited (0 when none is waiting)."""
    names = list(queues)
    marks = services.redis.mget([_sent_key(queue) for queue in names])
    return {
        queue: max(0.0, now - float(mark)) if mark else 0.0 for queue, mark in zip(names, marks, strict=True)
    }


def queue_states(services: Services, queues: Iterable[str], *, now: float) -> dict[str, str]:
    """`ok` or `stalled` (a canary waited longer than CANARY_TIMEOUT_S) for each queue."""
    timeout = services.settings.CANARY_TIMEOUT_S
    return {
        queue: "stalled" if waited > timeout else "ok"
        for queue, waited in waiting_s(services, queues, now=now).items()
    }
