"""What every job end does with money: release a hold idempotently, and tell the user their balance."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, date, datetime
from typing import Any

import ledger
from ledger.amounts import credits_text
from orchestration.jobs import progress
from orchestration.services import Services

log = logging.getLogger(__name__)


def release_hold(db: Any, hold_id: str | None, *, key: str) -> ledger.Settlement | None:
    """Void an ended job's hold; None if it has none or it was resolved already (expired, voided)."""
    if hold_id is None:
        return None
    # Expired or voided already: the credits are back either way.
    with contextlib.suppress(ledger.HoldAlreadyResolved):
        return ledger.void(db, hold_id=hold_id, idempotency_key=key)
    return None


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a stored timestamp (SQLite hands back naive UTC datetimes).

    A released hold gives its allowance back to the day it was counted on, not to the day it ends."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def balance_fields(balance: ledger.Balance) -> dict[str, str]:
    """A balance as the `balance` event on the user's stream carries it (credits as decimal text)."""
    return {
        "posted": credits_text(balance.posted),
        "held": credits_text(balance.held),
        "available": credits_text(balance.available),
    }


def notify_balance(services: Services, user_id: str, balance: ledger.Balance | None = None) -> None:
    """Publish the user's new balance (read now unless given) on their event stream."""
    if balance is None:
        with services.uow(autocommit=True) as db:
            balance = ledger.balance(db, user_id=user_id)
    progress.publish_user_event(services.redis, user_id, "balance", **balance_fields(balance))
