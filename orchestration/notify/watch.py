"""What a user watches, as the money unit read it with the account lock: the low-balance band and the
webhook events subscribed. Code inside the unit reads it from the connection for free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

# Every event a user webhook may subscribe to (API.md "Notifications"); the order gives each its bit.
EVENT_TYPES = (
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "balance.low",
    "balance.recovered",
    "payment.succeeded",
    "payment.refunded",
)
BITS = {name: 1 << index for index, name in enumerate(EVENT_TYPES)}
_WATCH = "creditflow.notify.watch"
_OUTBOX = "creditflow.notify.outbox"


@dataclass(frozen=True, slots=True)
class Watch:
    """A user's low-balance band (`floor`, `ceiling`, micro-credits) and subscribed webhook events (bits)."""

    floor: int | None
    ceiling: int | None
    events: int


def events_mask(names: Any) -> int:
    """The bits of these event type names."""
    mask = 0
    for name in names:
        mask |= BITS[name]
    return mask


def remember(connection: Connection, row: Any) -> None:
    """Keep what the account lock read (a row with floor, ceiling, events; or None) for this unit."""
    info = connection.info
    info.pop(_OUTBOX, None)
    if row is None or (row.floor is None and row.ceiling is None and not row.events):
        info.pop(_WATCH, None)
    else:
        info[_WATCH] = Watch(row.floor, row.ceiling, row.events or 0)


def forget(connection: Connection) -> list[str]:
    """End of a unit: drop its watch, and answer the notifications it wrote (to fan out after commit)."""
    connection.info.pop(_WATCH, None)
    return list(connection.info.pop(_OUTBOX, ()))


def watch_of(connection: Connection) -> Watch | None:
    """The locked user's watch in this money unit, or None (nothing watched: every check is free)."""
    found = connection.info.get(_WATCH)
    return found if isinstance(found, Watch) else None


def subscribed(connection: Connection, event_type: str) -> bool:
    """Whether the locked user has an enabled webhook endpoint for `event_type`."""
    watch = watch_of(connection)
    return watch is not None and bool(watch.events & BITS[event_type])


def wrote(connection: Connection, notification_id: str) -> None:
    """Note a notification written in this unit, so the unit fans it out once committed."""
    connection.info.setdefault(_OUTBOX, []).append(notification_id)
