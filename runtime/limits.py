"""Time limits: one table per queue, read by the job kinds, Celery (celeryconfig) and the reaper.

A job's own limit (`jobs.time_limit_s`: its kind's, capped by its queue's) is the one that counts:
the running step sees its deadline through `RunContext.should_stop()` and ends with what it has.
Celery's limits are an outer bound a little later (they fire only on prefork pools, for a step that
stopped checking), and the reaper's later still, so the reaper never ends a job Celery still runs:

    job limit  <  Celery soft (+15 s)  <  Celery hard (+30 s)  <  reaper (+60 s)
"""

from __future__ import annotations

from runtime.settings import Settings

CELERY_SOFT_MARGIN_S = 15
CELERY_HARD_MARGIN_S = 30
REAPER_GRACE_S = 60
FIXED_LIMITS_S = {"critical": 60, "maintenance": 300, "notify": 120}


def queue_limit_s(queue: str, settings: Settings) -> int:
    """The longest a job (or task) on `queue` may run, in seconds."""
    configured = {
        "interactive": settings.INTERACTIVE_TIME_LIMIT_S,
        "agents": settings.AGENT_TIME_LIMIT_S,
        "images": settings.IMAGES_TIME_LIMIT_S,
        # CPU-bound jobs (the local model) of every kind: a chat turn asks for the interactive limit.
        "local": max(settings.INTERACTIVE_TIME_LIMIT_S, settings.AGENT_TIME_LIMIT_S),
    }
    try:
        return configured.get(queue) or FIXED_LIMITS_S[queue]
    except KeyError:
        raise ValueError(f"unknown queue {queue!r}") from None


def celery_limits(queue: str, settings: Settings) -> tuple[int, int]:
    """(soft, hard) Celery time limits of `queue`'s tasks: just after the jobs' own deadline."""
    limit = queue_limit_s(queue, settings)
    return limit + CELERY_SOFT_MARGIN_S, limit + CELERY_HARD_MARGIN_S


def job_limit_s(requested: int | None, queue: str, settings: Settings) -> int:
    """A job's time limit: what its kind asks for (default: the queue's), never beyond the queue's."""
    limit = queue_limit_s(queue, settings)
    return min(requested, limit) if requested else limit
