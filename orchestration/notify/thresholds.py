"""Low-balance alerts: each threshold told once per crossing (`balance.low`), and `balance.recovered` when a
credit (a top-up) lifts the balance back over it, decided inside the transaction that moves the money.

The judged balance is the available one (posted - held). A hold lowers it, so the hold is where a job
crosses a threshold; a settle only gives back what the hold took beyond the cost (capture <= hold), and
such a give-back does not count as a recovery, or every job near a threshold would tell "low" then
"recovered". The money unit read the user's band with its account lock (orchestration/notify/watch.py):
a move that crosses nothing costs one or two integer compares and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

import ledger
from ledger.amounts import credits_text
from orchestration.notify import outbox
from orchestration.notify.tables import watches
from orchestration.notify.watch import watch_of

MAX_THRESHOLDS = 5


def as_list(preference: Any) -> list[int]:
    """The thresholds of a `low_balance_threshold` preference (one amount, a list of them, or None)."""
    if preference is None:
        return []
    values = preference if isinstance(preference, list) else [preference]
    return sorted({int(value) for value in values})


def band(thresholds: Iterable[int], told: Iterable[int]) -> tuple[int | None, int | None]:
    """(floor, ceiling): the highest threshold not told yet, and the lowest one told."""
    told_set = set(told)
    untold = [t for t in thresholds if t not in told_set]
    return (max(untold) if untold else None), (min(told_set) if told_set else None)


def check_debit(db: Connection, *, user_id: str, available: int | None = None) -> None:
    """After money left the balance (a hold, a refund): tell each threshold it fell below, once."""
    watch = watch_of(db)
    if watch is None or watch.floor is None:
        return  # nothing to fall below: the common case costs this compare
    if available is None:
        available = ledger.balance(db, user_id=user_id).available
    if available < watch.floor:
        decide(db, user_id=user_id, available=available, credit=False)


def check_credit(db: Connection, *, user_id: str, available: int | None = None) -> None:
    """After a credit (a payment): tell each told threshold the balance is back over."""
    watch = watch_of(db)
    if watch is None or watch.ceiling is None:
        return
    if available is None:
        available = ledger.balance(db, user_id=user_id).available
    if available >= watch.ceiling:
        decide(db, user_id=user_id, available=available, credit=True)


def decide(db: Connection, *, user_id: str, available: int, credit: bool) -> list[str]:
    """The slow path, only on a crossing: write a notification per threshold crossed, move the band."""
    row = db.execute(select(watches).where(watches.c.user_id == user_id)).first()
    if row is None:
        return []
    thresholds = [int(t) for t in row.thresholds]
    told = {int(t) for t in row.told}
    fell = [t for t in thresholds if t not in told and available < t]
    rose = [t for t in thresholds if t in told and available >= t] if credit else []
    written = [
        outbox.write(db, user_id=user_id, event_type="balance.low", data=_data(t, available)) for t in fell
    ] + [
        outbox.write(db, user_id=user_id, event_type="balance.recovered", data=_data(t, available))
        for t in rose
    ]
    if fell or rose:
        told = (told | set(fell)) - set(rose)
        floor, ceiling = band(thresholds, told)
        outbox.upsert_watch(db, user_id, told=sorted(told), floor=floor, ceiling=ceiling)
    return written


def choose(db: Connection, *, user_id: str, preference: Any) -> None:
    """The user set `low_balance_threshold` (under their account lock): keep what was told of the thresholds
    that stay, and tell at once a new one the balance is already under."""
    thresholds = as_list(preference)
    row = db.execute(select(watches.c.told).where(watches.c.user_id == user_id)).first()
    told = sorted({int(t) for t in (row.told if row else [])} & set(thresholds))
    floor, ceiling = band(thresholds, told)
    outbox.upsert_watch(db, user_id, thresholds=thresholds, told=told, floor=floor, ceiling=ceiling)
    if floor is not None:
        available = ledger.balance(db, user_id=user_id).available
        if available < floor:
            decide(db, user_id=user_id, available=available, credit=False)


def _data(threshold: int, available: int) -> dict[str, str]:
    return {"threshold": credits_text(threshold), "available": credits_text(available)}
