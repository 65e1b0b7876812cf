"""When a failed webhook delivery is tried again: the Standard Webhooks schedule with jitter, or what the
receiver's Retry-After asked for (429, 503)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

SLOW_DOWN = frozenset({429, 503})


def next_delay(
    schedule: tuple[float, ...], attempts_done: int, *, jitter: float, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after `attempts_done` attempts; None when the schedule is spent."""
    if attempts_done >= len(schedule):
        return None
    delay = schedule[attempts_done]
    spread = delay * jitter
    return max(0.0, delay + (rng or random).uniform(-spread, spread))


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def after_failure(
    schedule: tuple[float, ...],
    attempts_done: int,
    *,
    status: int | None,
    retry_after: str | None,
    jitter: float,
    max_retry_after_s: float,
) -> float | None:
    """Seconds until the next attempt after a failed one; None to give up (the schedule is spent)."""
    delay = next_delay(schedule, attempts_done, jitter=jitter)
    if delay is None:
        return None
    if status in SLOW_DOWN:
        asked = retry_after_s(retry_after)
        if asked is not None:
            return min(asked, max_retry_after_s)
    return delay
