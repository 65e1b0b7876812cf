"""A Hypothesis state machine drives random operations against a small reference model."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import ledger
from ledger.tables import accounts
from tests.integration.ledger.conftest import M, place_hold

pytestmark = pytest.mark.timeout(180)

# Whole credits plus a few micro-credits: large enough that balances actually run low.
amounts = st.builds(lambda credits, micro: credits * M + micro, st.integers(1, 600), st.integers(0, 999))


class LedgerMachine(RuleBasedStateMachine):
    """One fresh user per example; the model tracks posted, held, debt and each hold's fate."""

    sessions: sessionmaker[Session]
    signer: ledger.Signer

    def __init__(self) -> None:
        super().__init__()
        self.user = f"u-{uuid.uuid4().hex[:10]}"
        self.keys = itertools.count()
        with self.sessions.begin() as session:
            ledger.ensure_user_account(session, user_id=self.user)
        self.posted, self.held, self.debt = 1000 * M, 0, 0
        self.pending: dict[str, int] = {}
        self.resolved: dict[str, str] = {}
        self.last_hold: tuple[str, int, str] | None = None  # (key, amount, hold id) for replays

    def _key(self, prefix: str) -> str:
        return f"{self.user}-{prefix}-{next(self.keys)}"

    @rule(amount=amounts)
    def hold(self, amount: int) -> None:
        key = self._key("h")
        with self.sessions.begin() as session:
            if amount > self.posted - self.held:
                with pytest.raises(ledger.InsufficientCredits):
                    place_hold(session, self.user, amount, key, reference=key)
                return
            placed = place_hold(session, self.user, amount, key, reference=key)
        self.pending[placed.id] = amount
        self.held += amount
        self.last_hold = (key, amount, placed.id)

    @precondition(lambda self: self.last_hold is not None)
    @rule()
    def replay_last_hold(self) -> None:
        assert self.last_hold is not None
        key, amount, hold_id = self.last_hold
        with self.sessions.begin() as session:
            again = place_hold(session, self.user, amount, key, reference=key)
            assert again.id == hold_id
            with pytest.raises(ledger.IdempotencyConflict):
                place_hold(session, self.user, amount + 1, key, reference=key)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), share=st.integers(min_value=0, max_value=100))
    def capture(self, data: st.DataObject, share: int) -> None:
        hold_id = data.draw(st.sampled_from(list(self.pending)))
        amount = self.pending[hold_id] * share // 100
        with self.sessions.begin() as session:
            with pytest.raises(ledger.CaptureExceedsHold):
                ledger.capture(
                    session,
                    hold_id=hold_id,
                    amount=self.pending[hold_id] + 1,
                    idempotency_key=self._key("over"),
                )
            settled = ledger.capture(session, hold_id=hold_id, amount=amount, idempotency_key=self._key("c"))
        assert settled.released == self.pending[hold_id] - amount
        self.held -= self.pending.pop(hold_id)
        self.posted -= amount
        self.resolved[hold_id] = "captured"

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(list(self.pending)))
        with self.sessions.begin() as session:
            ledger.void(session, hold_id=hold_id, idempotency_key=self._key("v"))
        self.held -= self.pending.pop(hold_id)
        self.resolved[hold_id] = "voided"

    @precondition(lambda self: self.resolved)
    @rule(data=st.data())
    def resolve_again(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(list(self.resolved)))
        with self.sessions.begin() as session, pytest.raises(ledger.HoldAlreadyResolved) as refused:
            ledger.void(session, hold_id=hold_id, idempotency_key=self._key("again"))
        assert refused.value.code == {"captured": "already_captured", "voided": "already_voided"}.get(
            self.resolved[hold_id], "expired"
        )

    @precondition(lambda self: self.pending)
    @rule()
    def expire_everything(self) -> None:
        with self.sessions.begin() as session:
            # Other examples' holds may expire too; only this user's are in the model.
            ledger.expire_holds(session, now=datetime.now(UTC) + timedelta(hours=1), limit=10_000)
        for hold_id in self.pending:
            self.resolved[hold_id] = "expired"
        self.pending.clear()
        self.held = 0

    @rule(amount=amounts)
    def purchase(self, amount: int) -> None:
        with self.sessions.begin() as session:
            receipt = ledger.purchase(
                session,
                user_id=self.user,
                amount=amount,
                rail="crypto",
                reference="tx",
                idempotency_key=self._key("p"),
            )
        repaid = min(self.debt, amount)
        assert receipt.debt_repaid == repaid
        self.debt -= repaid
        self.posted += amount - repaid

    @rule(amount=amounts, clawback=st.booleans())
    def take_back(self, amount: int, clawback: bool) -> None:
        operation = ledger.clawback if clawback else ledger.refund
        with self.sessions.begin() as session:
            receipt = operation(
                session,
                user_id=self.user,
                amount=amount,
                rail="stripe",
                reference="ch",
                idempotency_key=self._key("r"),
            )
        covered = min(amount, self.posted - self.held)
        assert receipt.to_debt == amount - covered
        self.posted -= covered
        self.debt += amount - covered

    @rule(amount=amounts)
    def grant(self, amount: int) -> None:
        with self.sessions.begin() as session:
            ledger.grant(
                session, user_id=self.user, amount=amount, reason="promo", idempotency_key=self._key("g")
            )
        self.posted += amount

    @invariant()
    def balances_match_the_model(self) -> None:
        with self.sessions() as session:
            assert ledger.balance(session, user_id=self.user) == (
                self.posted,
                self.held,
                self.posted - self.held,
            )
            assert ledger.account(session, user_id=self.user).debt == self.debt
            users = session.execute(select(func.sum(accounts.c.posted))).scalar_one()
            assert users + sum(ledger.system_balances(session).values()) == 0  # zero sum

    def teardown(self) -> None:
        with self.sessions() as session:
            report = ledger.verify(session, verifier=self.signer.verifier)
        assert report.ok, report.problems


def test_random_operations_match_the_model(sessions: sessionmaker[Session], signer: ledger.Signer) -> None:
    LedgerMachine.sessions = sessions
    LedgerMachine.signer = signer
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # Shrinking replays hundreds of database steps; a raw failing run is enough.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )
