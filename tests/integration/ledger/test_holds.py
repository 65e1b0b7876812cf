"""Two-phase holds on every backend: exactly-once resolution, idempotency, no overspending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import ledger
from ledger.tables import entries, holds
from tests.integration.ledger.conftest import M, check_ledger, in_threads, new_user, place_hold

pytestmark = pytest.mark.timeout(120)


def test_capture_releases_the_rest_and_charges_revenue(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "alice")
    with sessions.begin() as session:
        held = place_hold(session, "alice", 10 * M, "h1")
        assert ledger.balance(session, user_id="alice") == (1000 * M, 10 * M, 990 * M)
        settled = ledger.capture(session, hold_id=held.id, amount=4 * M, idempotency_key="c1")
        assert (settled.status, settled.captured, settled.released) == ("captured", 4 * M, 6 * M)
        assert ledger.balance(session, user_id="alice") == (996 * M, 0, 996 * M)
        assert settled.balance == (996 * M, 0, 996 * M)  # what it moved the balance to, read back above
        assert ledger.system_balances(session)["revenue"] == 4 * M
    check_ledger(sessions, signer)


def test_void_reports_the_balance_it_left_and_a_replay_reports_none(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "vera")
    with sessions.begin() as session:
        held = place_hold(session, "vera", 7 * M, "h1")
        place_hold(session, "vera", 2 * M, "h2")
        voided = ledger.void(session, hold_id=held.id, idempotency_key="v1")
        assert voided.balance == ledger.balance(session, user_id="vera") == (1000 * M, 2 * M, 998 * M)
        replay = ledger.void(session, hold_id=held.id, idempotency_key="v1")
        assert (replay.status, replay.released, replay.balance) == ("voided", 7 * M, None)


def test_over_capture_is_refused_and_changes_nothing(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "bob")
    with sessions.begin() as session:
        held = place_hold(session, "bob", 5 * M, "h1")
        with pytest.raises(ledger.CaptureExceedsHold) as refused:
            ledger.capture(session, hold_id=held.id, amount=5 * M + 1, idempotency_key="c1")
        assert (refused.value.held, refused.value.requested) == (5 * M, 5 * M + 1)
        assert ledger.get_hold(session, hold_id=held.id).status == "pending"
        assert ledger.balance(session, user_id="bob") == (1000 * M, 5 * M, 995 * M)


def test_insufficient_credits_changes_nothing(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "carol")
    with sessions.begin() as session:
        with pytest.raises(ledger.InsufficientCredits) as refused:
            place_hold(session, "carol", 1000 * M + 1, "too-much")
        assert (refused.value.available, refused.value.required) == (1000 * M, 1000 * M + 1)
        assert refused.value.code == "insufficient_credits"
        assert session.execute(select(func.count()).select_from(holds)).scalar_one() == 0
        assert ledger.balance(session, user_id="carol") == (1000 * M, 0, 1000 * M)
        # The key was not burnt: the same key works once credits suffice.
        assert place_hold(session, "carol", 1000 * M, "too-much", reference="job-too-much").amount == 1000 * M


def test_second_resolution_gets_a_clear_error(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "dave")
    with sessions.begin() as session:
        first = place_hold(session, "dave", 3 * M, "h1")
        second = place_hold(session, "dave", 3 * M, "h2")
        ledger.capture(session, hold_id=first.id, amount=M, idempotency_key="c1")
        ledger.void(session, hold_id=second.id, idempotency_key="v2")
        with pytest.raises(ledger.HoldAlreadyResolved) as captured:
            ledger.void(session, hold_id=first.id, idempotency_key="v1")
        assert captured.value.code == "already_captured"
        with pytest.raises(ledger.HoldAlreadyResolved) as voided:
            ledger.capture(session, hold_id=second.id, amount=M, idempotency_key="c2")
        assert voided.value.code == "already_voided"
        with pytest.raises(ledger.HoldNotFound):
            ledger.void(session, hold_id="missing", idempotency_key="v3")
        # Replays with the winner's key return the first result and move nothing.
        again = ledger.capture(session, hold_id=first.id, amount=M, idempotency_key="c1")
        assert (again.status, again.captured, again.released) == ("captured", M, 2 * M)
        with pytest.raises(ledger.IdempotencyConflict) as conflict:
            ledger.capture(session, hold_id=first.id, amount=2 * M, idempotency_key="c1")
        assert conflict.value.field == "amount"
        assert ledger.balance(session, user_id="dave") == (999 * M, 0, 999 * M)


def test_expired_holds_are_released_by_the_sweep(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "erin")
    now = datetime.now(UTC)
    with sessions.begin() as session:
        stale = place_hold(session, "erin", 7 * M, "old", expires_at=now - timedelta(seconds=1))
        fresh = place_hold(session, "erin", 2 * M, "new", expires_at=now + timedelta(minutes=5))
        assert ledger.expire_holds(session, now=now) == 1
        assert ledger.expire_holds(session, now=now) == 0
        assert ledger.get_hold(session, hold_id=stale.id).status == "expired"
        assert ledger.get_hold(session, hold_id=fresh.id).status == "pending"
        with pytest.raises(ledger.HoldAlreadyResolved) as late:
            ledger.capture(session, hold_id=stale.id, amount=M, idempotency_key="late")
        assert late.value.code == "expired"
        assert ledger.balance(session, user_id="erin") == (1000 * M, 2 * M, 998 * M)


def test_fifty_threads_cannot_overspend(sessions: sessionmaker[Session], signer: ledger.Signer) -> None:
    new_user(sessions, "hot")

    def spend(thread: int) -> int:
        won = 0
        for attempt in range(100):
            try:
                with sessions.begin() as session:
                    place_hold(session, "hot", M, f"t{thread}-{attempt}")
                won += 1
            except ledger.InsufficientCredits:
                pass
        return won

    results = in_threads(50, spend)
    assert all(isinstance(result, int) for result in results), results
    assert sum(r for r in results if isinstance(r, int)) == 1000
    with sessions() as session:
        assert ledger.balance(session, user_id="hot") == (1000 * M, 1000 * M, 0)
        assert session.execute(select(func.count()).select_from(holds)).scalar_one() == 1000
    check_ledger(sessions, signer)  # chain, cached balances and zero sum


def test_capture_void_and_expiry_race_exactly_one_wins(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "race")
    for round_ in range(5):
        with sessions.begin() as session:
            held = place_hold(session, "race", 10 * M, f"h{round_}", expires_at=datetime.now(UTC))

        def resolve(contender: int, hold_id: str = held.id, round_: int = round_) -> str:
            with sessions.begin() as session:
                if contender % 3 == 0:
                    return ledger.capture(
                        session, hold_id=hold_id, amount=4 * M, idempotency_key=f"c{round_}-{contender}"
                    ).status
                if contender % 3 == 1:
                    return ledger.void(
                        session, hold_id=hold_id, idempotency_key=f"v{round_}-{contender}"
                    ).status
                swept = ledger.expire_holds(session, now=datetime.now(UTC) + timedelta(seconds=1))
                return "expired" if swept else "nothing"

        results = in_threads(6, resolve)
        wins = [r for r in results if r in ("captured", "voided", "expired")]
        losers = [r for r in results if isinstance(r, ledger.HoldAlreadyResolved) or r == "nothing"]
        assert len(wins) == 1, results
        assert len(losers) == 5, results
        with sessions() as session:
            assert ledger.get_hold(session, hold_id=held.id).status == wins[0]
            count = select(func.count()).select_from(entries).where(entries.c.hold_id == held.id)
            assert session.execute(count).scalar_one() == 2  # the hold and its one resolution
    with sessions() as session:
        assert ledger.balance(session, user_id="race").held == 0
    check_ledger(sessions, signer)


def test_one_key_ten_concurrent_calls_make_one_hold(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "idem")

    def place(_: int) -> str:
        with sessions.begin() as session:
            return place_hold(session, "idem", 5 * M, "same-key", reference="job-1").id

    results = in_threads(10, place)
    assert len(set(results)) == 1, results
    assert isinstance(results[0], str), results
    with sessions.begin() as session:
        assert ledger.balance(session, user_id="idem") == (1000 * M, 5 * M, 995 * M)
        with pytest.raises(ledger.IdempotencyConflict) as conflict:
            place_hold(session, "idem", 6 * M, "same-key", reference="job-1")
        assert conflict.value.field == "amount"
        assert conflict.value.code == "idempotency_conflict"

    def settle(_: int) -> int:
        with sessions.begin() as session:
            return ledger.capture(
                session, hold_id=str(results[0]), amount=2 * M, idempotency_key="settle-1"
            ).captured

    assert in_threads(10, settle) == [2 * M] * 10
    with sessions() as session:
        assert ledger.balance(session, user_id="idem") == (998 * M, 0, 998 * M)
        assert (
            session.execute(
                select(func.count()).select_from(entries).where(entries.c.kind == "capture")
            ).scalar_one()
            == 1
        )
    check_ledger(sessions, signer)


def test_expiry_compares_instants_not_wall_clocks(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "tz")
    east = timezone(timedelta(hours=5))
    now = datetime.now(UTC)
    with sessions.begin() as session:
        # Expires in 30 minutes, written in a UTC+5 wall clock (which reads "later" than UTC).
        held = place_hold(session, "tz", M, "tz-1", expires_at=(now + timedelta(minutes=30)).astimezone(east))
        assert ledger.expire_holds(session, now=now + timedelta(minutes=29)) == 0
        assert ledger.expire_holds(session, now=(now + timedelta(minutes=31)).astimezone(east)) == 1
        assert ledger.get_hold(session, hold_id=held.id).status == "expired"
