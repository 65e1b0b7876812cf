"""Money in and out of a user account: purchases, refunds, clawbacks and admin adjustments.

A refund or clawback never fails: it takes what is available (never what pending holds
reserve) and books the shortfall on the system debt account, remembered as the user's `debt`;
the next purchase repays that debt before crediting the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import Row

from ledger import chart
from ledger.errors import InsufficientCredits, InvalidAmount
from ledger.idempotency import claim, record, release
from ledger.models import Receipt
from ledger.posting import Posted, check_amount, lock_account, post
from ledger.sql import Executor


def _posted(result: Posted | None) -> int:
    assert result is not None, "a locked, pre-checked posting cannot fail"
    return result.entry_id


class RailMove(TypedDict):
    """What a purchase, refund or clawback names: whose credits, how many, which rail, the key."""

    user_id: str
    amount: int
    rail: str
    reference: str
    idempotency_key: str
    now: NotRequired[datetime | None]


@dataclass(frozen=True)
class _Opened:
    """A movement from or to a rail, checked, its key claimed, the account locked."""

    account: Row[Any]
    rail_id: int
    amount: int
    reference: str
    key: str
    now: datetime


def _open(session: Executor, operation: str, move: RailMove) -> Receipt | _Opened:
    """Check the movement, lock the account and claim the key; the first receipt when it is a replay."""
    amount = check_amount(move["amount"])
    rail_id = chart.rail_account(move["rail"])
    now = move.get("now") or datetime.now(UTC)
    user_id, reference, key = move["user_id"], move["reference"], move["idempotency_key"]
    account = lock_account(session, user_id)
    request = {"user_id": user_id, "amount": amount, "rail": move["rail"], "reference": reference}
    replay = claim(session, key=key, operation=operation, request=request, now=now)
    if replay is not None:
        return replay
    return _Opened(account, rail_id, amount, reference, key, now)


def purchase(session: Executor, **move: Unpack[RailMove]) -> Receipt:
    """Credit paid credits from a payment rail (stripe, paypal, crypto); repays debt first."""
    opened = _open(session, "purchase", move)
    if isinstance(opened, Receipt):
        return opened
    account, rail_id, amount, key, now = opened.account, opened.rail_id, opened.amount, opened.key, opened.now
    repaid = min(account.debt, amount)
    entry_ids = []
    if repaid:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="debt_repayment", counterparty_id=rail_id, amount=repaid,
            now=now, dd=-repaid, reference=opened.reference, key=key,
        )))
    if amount > repaid:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="purchase", counterparty_id=rail_id,
            amount=amount - repaid, now=now, dp=amount - repaid, reference=opened.reference, key=key,
        )))
    receipt = Receipt("purchase", key, move["user_id"], amount, tuple(entry_ids), debt_repaid=repaid)
    return record(session, receipt)


def _take_back(session: Executor, kind: str, move: RailMove) -> Receipt:
    opened = _open(session, kind, move)
    if isinstance(opened, Receipt):
        return opened
    account, rail_id, amount, key, now = opened.account, opened.rail_id, opened.amount, opened.key, opened.now
    covered = max(0, min(amount, account.posted - account.held))
    shortfall = amount - covered
    entry_ids = []
    if covered:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind=kind, counterparty_id=rail_id, amount=covered, now=now,
            dp=-covered, reference=opened.reference, key=key,
        )))
    if shortfall:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="debt", counterparty_id=rail_id, amount=shortfall,
            now=now, dd=shortfall, reference=opened.reference, key=key,
        )))
    return record(session, Receipt(kind, key, move["user_id"], amount, tuple(entry_ids), to_debt=shortfall))


def refund(session: Executor, **move: Unpack[RailMove]) -> Receipt:
    """Take back refunded paid credits; what the balance can't cover goes to debt. Never fails."""
    return _take_back(session, "refund", move)


def clawback(session: Executor, **move: Unpack[RailMove]) -> Receipt:
    """Take back disputed credits (chargeback); what the balance can't cover goes to debt."""
    return _take_back(session, "clawback", move)


def adjust(
    session: Executor, *, user_id: str, amount: int, reason: str, idempotency_key: str,
    now: datetime | None = None,
) -> Receipt:
    """Admin correction: a signed amount; a debit beyond available raises InsufficientCredits."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidAmount("an adjustment is a non-zero int of micro-credits")
    size = check_amount(abs(amount))
    now = now or datetime.now(UTC)
    account = lock_account(session, user_id)
    request = {"user_id": user_id, "amount": amount, "reason": reason}
    replay = claim(session, key=idempotency_key, operation="adjust", request=request, now=now)
    if replay is not None:
        return replay
    if amount < 0 and account.posted - account.held < size:
        release(session, idempotency_key)
        raise InsufficientCredits(account.posted - account.held, size)
    kind = "adjust_credit" if amount > 0 else "adjust_debit"
    entry_id = _posted(post(
        session, account_id=account.id, kind=kind, counterparty_id=chart.ADJUSTMENTS, amount=size,
        now=now, dp=amount, reference=reason, key=idempotency_key,
    ))
    return record(session, Receipt("adjust", idempotency_key, user_id, amount, (entry_id,)))
