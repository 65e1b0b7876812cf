"""Accounts, welcome grant, promotional lots, purchases, refunds, clawbacks, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import ledger
from ledger.funding import RailMove
from ledger.tables import entries
from tests.integration.ledger.conftest import M, check_ledger, in_threads, new_user, place_hold

pytestmark = pytest.mark.timeout(120)


def test_welcome_grant_exactly_once_when_first_requests_race(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    def first_request(_: int) -> bool:
        with sessions.begin() as session:
            return ledger.ensure_user_account(session, user_id="newcomer").created

    results = in_threads(10, first_request)
    assert sorted(results, key=str) == [False] * 9 + [True], results
    with sessions() as session:
        assert ledger.balance(session, user_id="newcomer") == (1000 * M, 0, 1000 * M)
        grants = select(func.count()).select_from(entries).where(entries.c.kind == "grant")
        assert session.execute(grants).scalar_one() == 1
        assert [lot.reason for lot in ledger.lots_of(session, user_id="newcomer")] == ["welcome"]
    check_ledger(sessions, signer)


def test_unknown_user_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        with pytest.raises(ledger.AccountNotFound):
            place_hold(session, "ghost", M, "g", reference=None)
        with pytest.raises(ledger.AccountNotFound):
            ledger.balance(session, user_id="ghost")


def test_amounts_must_be_positive_ints(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "floaty")
    with sessions.begin() as session:
        for bad in (1.5, 0, -1, True, "5"):
            with pytest.raises(ledger.InvalidAmount):
                place_hold(session, "floaty", bad, f"bad-{bad!r}", reference=None)  # type: ignore[arg-type]


def _spend(session: Session, user: str, amount: int, key: str) -> None:
    held = place_hold(session, user, amount, f"h-{key}", reference=key)
    ledger.capture(session, hold_id=held.id, amount=amount, idempotency_key=f"c-{key}")


def _lot(session: Session, user: str, amount: int, reason: str, **options: Any) -> ledger.Receipt:
    """A promotional lot granted under the key g-<reason>."""
    return ledger.grant(
        session, user_id=user, amount=amount, reason=reason, idempotency_key=f"g-{reason}", **options
    )


def test_lots_are_spent_by_priority_then_expiry_then_age_and_expire(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    now = datetime.now(UTC)
    new_user(sessions, "lots", paid=500 * M)
    with sessions.begin() as session:
        soon = _lot(session, "lots", 100 * M, "soon", expires_at=now + timedelta(days=1))
        later_lot = _lot(session, "lots", 100 * M, "later", expires_at=now + timedelta(days=2))
        urgent = _lot(session, "lots", 50 * M, "urgent", priority=-1)
        # Order: urgent (priority -1), soon, later (expiry), welcome (no expiry, oldest).
        order = [lot.reason for lot in ledger.lots_of(session, user_id="lots")]
        assert order == ["urgent", "soon", "later", "welcome"]
        _spend(session, "lots", 120 * M, "first")  # all of urgent, 70 of soon
        remaining = {lot.reason: lot.remaining for lot in ledger.lots_of(session, user_id="lots")}
        assert remaining == {"soon": 30 * M, "later": 100 * M, "welcome": 1000 * M}
        # A new grant reconciles what was spent onto the lot rows first (lazy allocation is exact).
        _lot(session, "lots", 10 * M, "late")
        _spend(session, "lots", 40 * M, "second")  # 30 of soon, 10 of later
        assert ledger.balance(session, user_id="lots") == (1600 * M, 0, 1600 * M)
        # Two days on: `soon` is gone, `later` has 90 left and expires.
        assert ledger.expire_lots(session, now=now + timedelta(days=3)) == 1
        assert ledger.balance(session, user_id="lots") == (1510 * M, 0, 1510 * M)
        assert ledger.system_balances(session)["expiry"] == 90 * M
        assert {lot.reason for lot in ledger.lots_of(session, user_id="lots")} == {"welcome", "late"}
        assert ledger.expire_lots(session, now=now + timedelta(days=3)) == 0
        assert (soon.lot_id, later_lot.lot_id, urgent.lot_id) != (None, None, None)
    check_ledger(sessions, signer)


def test_lot_expiry_never_takes_what_a_pending_hold_relies_on(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        ledger.ensure_user_account(session, user_id="promo-only")
        ledger.adjust(
            session,
            user_id="promo-only",
            amount=-1000 * M,
            reason="test: drop welcome",
            idempotency_key="drop",
        )
        ledger.grant(
            session,
            user_id="promo-only",
            amount=100 * M,
            reason="trial",
            idempotency_key="trial",
            expires_at=now + timedelta(hours=1),
        )
        held = place_hold(session, "promo-only", 80 * M, "h", reference="job")
        assert ledger.expire_lots(session, now=now + timedelta(hours=2)) == 1  # only the free 20
        assert ledger.balance(session, user_id="promo-only") == (80 * M, 80 * M, 0)
        ledger.capture(session, hold_id=held.id, amount=50 * M, idempotency_key="c")
        assert ledger.balance(session, user_id="promo-only") == (30 * M, 0, 30 * M)
        assert ledger.expire_lots(session, now=now + timedelta(hours=2)) == 1  # the released 30
        assert ledger.balance(session, user_id="promo-only") == (0, 0, 0)
    check_ledger(sessions, signer)


def test_refund_and_clawback_go_into_debt_and_the_next_purchase_repays(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "payer", paid=200 * M)
    with sessions.begin() as session:
        held = place_hold(session, "payer", 1100 * M, "big", reference="job")
        first_refund = RailMove(
            user_id="payer", amount=150 * M, rail="stripe", reference="pi_1", idempotency_key="refund-1"
        )
        refunded = ledger.refund(session, **first_refund)
        # Only 100 was available (1200 posted, 1100 held): 50 goes to debt; the hold is untouched.
        assert (refunded.amount, refunded.to_debt) == (150 * M, 50 * M)
        assert ledger.balance(session, user_id="payer") == (1100 * M, 1100 * M, 0)
        clawed = ledger.clawback(
            session,
            user_id="payer",
            amount=70 * M,
            rail="stripe",
            reference="dp_1",
            idempotency_key="dispute-1",
        )
        assert clawed.to_debt == 70 * M
        assert ledger.account(session, user_id="payer").debt == 120 * M
        assert ledger.system_balances(session)["debt"] == -120 * M
        assert ledger.refund(session, **first_refund) == refunded  # replay
        with pytest.raises(ledger.IdempotencyConflict) as conflict:
            ledger.refund(session, **{**first_refund, "amount": 151 * M})
        assert conflict.value.field == "amount"
        ledger.void(session, hold_id=held.id, idempotency_key="v")
        bought = ledger.purchase(
            session, user_id="payer", amount=500 * M, rail="paypal", reference="o_1", idempotency_key="buy-2"
        )
        assert bought.debt_repaid == 120 * M
        assert ledger.account(session, user_id="payer").debt == 0
        assert ledger.balance(session, user_id="payer") == (1480 * M, 0, 1480 * M)
        assert ledger.system_balances(session)["debt"] == 0
        with pytest.raises(ledger.InsufficientCredits):
            ledger.adjust(session, user_id="payer", amount=-1481 * M, reason="too much", idempotency_key="a")
        ledger.adjust(session, user_id="payer", amount=-1480 * M, reason="fine", idempotency_key="a")
        assert ledger.balance(session, user_id="payer") == (0, 0, 0)
    check_ledger(sessions, signer)


def test_transactions_newest_first_with_cursor(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "hist")
    with sessions.begin() as session:
        for i in range(3):
            _spend(session, "hist", (i + 1) * M, f"job-{i}")
    check_ledger(sessions, signer)
    with sessions() as session:
        page = ledger.transactions(session, user_id="hist", limit=4)
        kinds = [item["kind"] for item in page["items"]]
        assert kinds == ["capture", "hold", "capture", "hold"]
        assert page["items"][0]["amount"] == -3 * M
        assert page["items"][0]["job_id"] == "job-2"
        assert page["items"][0]["balance_after"] == 994 * M
        assert page["items"][0]["sealed"] is True
        rest = ledger.transactions(session, user_id="hist", limit=4, cursor=page["next_cursor"])
        assert [item["kind"] for item in rest["items"]] == ["capture", "hold", "grant"]
        assert rest["next_cursor"] is None
        assert rest["items"][-1]["amount"] == 1000 * M
        with pytest.raises(ledger.InvalidCursor):
            ledger.transactions(session, user_id="hist", cursor="nope")
