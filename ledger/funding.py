"""Money in and out of a user account: purchases, refunds, clawbacks and admin adjustments.

A refund or clawback never fails: it takes what is available (never what pending holds
reserve) and books the shortfall on the system debt account, remembered as the user's `debt`;
the next purchase repays that debt before crediting the balance.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledger import chart
from ledger.errors import InsufficientCredits, InvalidAmount
from ledger.idempotency import claim, record, release
from ledger.models import Receipt
from ledger.posting import Posted, check_amount, lock_account, post
from ledger.sql import Executor


def _posted(result: Posted | None) -> int:
    assert result is not None, "a locked, pre-checked posting cannot fail"
    return result.entry_id


def purchase(
    session: Executor,
    *,
    user_id: str,
    amount: int,
    rail: str,
    reference: str,
    idempotency_key: str,
    now: datetime | None = None,
) -> Receipt:
    """Credit paid credits from a payment rail (stripe, paypal, crypto); repays debt first."""
    amount = check_amount(amount)
    rail_id = chart.rail_account(rail)
    now = now or datetime.now(UTC)
    account = lock_account(session, user_id)
    request = {"user_id": user_id, "amount": amount, "rail": rail, "reference": reference}
    replay = claim(session, key=idempotency_key, operation="purchase", request=request, now=now)
    if replay is not None:
        return replay
    repaid = min(account.debt, amount)
    entry_ids = []
    if repaid:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="debt_repayment", counterparty_id=rail_id, amount=repaid,
            now=now, dd=-repaid, reference=reference, key=idempotency_key,
        )))
    if amount > repaid:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="purchase", counterparty_id=rail_id,
            amount=amount - repaid, now=now, dp=amount - repaid, reference=reference, key=idempotency_key,
        )))
    receipt = Receipt("purchase", idempotency_key, user_id, amount, tuple(entry_ids), debt_repaid=repaid)
    return record(session, receipt)


def _take_back(
    session: Executor, *, kind: str, user_id: str, amount: int, rail: str, reference: str, key: str,
    now: datetime | None,
) -> Receipt:
    amount = check_amount(amount)
    rail_id = chart.rail_account(rail)
    now = now or datetime.now(UTC)
    account = lock_account(session, user_id)
    request = {"user_id": user_id, "amount": amount, "rail": rail, "reference": reference}
    replay = claim(session, key=key, operation=kind, request=request, now=now)
    if replay is not None:
        return replay
    covered = max(0, min(amount, account.posted - account.held))
    shortfall = amount - covered
    entry_ids = []
    if covered:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind=kind, counterparty_id=rail_id, amount=covered, now=now,
            dp=-covered, reference=reference, key=key,
        )))
    if shortfall:
        entry_ids.append(_posted(post(
            session, account_id=account.id, kind="debt", counterparty_id=rail_id, amount=shortfall,
            now=now, dd=shortfall, reference=reference, key=key,
        )))
    return record(session, Receipt(kind, key, user_id, amount, tuple(entry_ids), to_debt=shortfall))


def refund(
    session: Executor, *, user_id: str, amount: int, rail: str, reference: str, idempotency_key: str,
    now: datetime | None = None,
) -> Receipt:
    """Take back refunded paid credits; what the balance can't cover goes to debt. Never fails."""
    return _take_back(
        session, kind="refund", user_id=user_id, amount=amount, rail=rail, reference=reference,
        key=idempotency_key, now=now,
    )


def clawback(
    session: Executor, *, user_id: str, amount: int, rail: str, reference: str, idempotency_key: str,
    now: datetime | None = None,
) -> Receipt:
    """Take back disputed credits (chargeback); what the balance can't cover goes to debt."""
    return _take_back(
        session, kind="clawback", user_id=user_id, amount=amount, rail=rail, reference=reference,
        key=idempotency_key, now=now,
    )


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
