"""A job's receipt: what it was charged and released, and the ledger entry that says so.

Built in settle and compensation from what they already have (the row the compare-and-set returned and the
Settlement the ledger gave back: no extra round trip), and for a read from the job row plus one lookup."""

from __future__ import annotations

from typing import Any

import ledger
from ledger.amounts import credits_text
from ledger.models import Settlement
from ledger.sql import Executor

ENDED = frozenset({"succeeded", "failed", "canceled"})


def receipt(
    *,
    charged: int,
    released: int,
    entry_id: int | None,
    entry_hash: bytes | None,
    price_version: str | None,
    sealed_in: int | None = None,
) -> dict[str, Any]:
    """The receipt as events and the API show it: credits as decimal strings, the hash in hex."""
    answer: dict[str, Any] = {
        "charged": credits_text(charged),
        "released": credits_text(released),
        "entry_id": None if entry_id is None else str(entry_id),
        "entry_hash": None if entry_hash is None else entry_hash.hex(),
        "price_version": price_version,
    }
    if sealed_in is not None:
        answer["sealed_in"] = sealed_in
    return answer


def price_version_of(quote: Any) -> str | None:
    """The price version a job was quoted at (stored in its quote)."""
    return quote.get("price_version") if isinstance(quote, dict) else None


def settled(row: Any, settlement: Settlement | None, *, charged: int, released: int) -> dict[str, Any]:
    """The receipt of a job that settle or compensation just ended (the entry is not sealed yet)."""
    return receipt(
        charged=charged,
        released=released,
        entry_id=settlement.entry_id if settlement else None,
        entry_hash=settlement.entry_hash if settlement else None,
        price_version=price_version_of(getattr(row, "quote", None)),
    )


def of_job(db: Executor, row: Any) -> dict[str, Any] | None:
    """The receipt of an ended job read back (None while it runs), with `sealed_in` once sealed."""
    if row.status not in ENDED:
        return None
    found = ledger.resolution(db, user_id=row.user_id, hold_id=row.hold_id) if row.hold_id else None
    return receipt(
        charged=row.cost_charged or 0,
        released=row.cost_released or 0,
        entry_id=found["entry_id"] if found else None,
        entry_hash=found["entry_hash"] if found else None,
        price_version=price_version_of(row.quote),
        sealed_in=found["sealed_in"] if found else None,
    )


def job_receipt(services: Any, row: Any) -> dict[str, Any] | None:
    """`of_job` in its own short read (the API's GET of an ended job)."""
    if row.status not in ENDED:
        return None
    with services.uow(autocommit=True) as db:
        return of_job(db, row)
