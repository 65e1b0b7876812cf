"""Tampering is detected and named; proofs verify only for honest entries; sealing loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

import ledger
from ledger import canonical
from tests.integration.ledger.conftest import M, check_ledger, new_user, place_hold
from tests.support.databases import backends

pytestmark = pytest.mark.timeout(120)

IMMUTABLE = ("ledger_entries", "ledger_checkpoints", "ledger_checkpoint_leaves")


def _history(sessions: sessionmaker[Session], signer: ledger.Signer) -> dict[str, int]:
    """Two users with a few holds and captures, all sealed (three checkpoints); named entry ids."""
    ids: dict[str, int] = {}
    for user in ("ann", "ben"):
        new_user(sessions, user)
        with sessions.begin() as session:
            for i in range(3):
                held = place_hold(session, user, (i + 2) * M, f"{user}-h{i}", reference=f"{user}-{i}")
                settled = ledger.capture(
                    session, hold_id=held.id, amount=(i + 1) * M, idempotency_key=f"{user}-c{i}"
                )
                ids[f"{user}-hold{i}"] = held.entry_id or 0
                ids[f"{user}-capture{i}"] = settled.entry_id or 0
            ledger.seal(session, signer=signer)
    check_ledger(sessions, signer)
    return ids


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction that bypasses the append-only triggers, as an attacker with DB access could."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in IMMUTABLE:
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        yield conn


def _verify(sessions: sessionmaker[Session], signer: ledger.Signer) -> ledger.VerifyReport:
    with sessions() as session:
        report = ledger.verify(session, verifier=signer.verifier)
    assert not report.ok
    return report


def _tampered(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer, sql: str, params: dict[str, Any]
) -> ledger.VerifyReport:
    """Run one statement past the triggers, then verify: the report of what it broke."""
    with tampering(engine) as conn:
        conn.execute(text(sql), params)
    return _verify(sessions, signer)


def test_changed_amount_is_named(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    target = ids["ann-capture1"]
    report = _tampered(
        engine, sessions, signer, "UPDATE ledger_entries SET amount = 1 WHERE id = :id", {"id": target}
    )
    assert report.first_bad_entry == target
    assert {p["code"] for p in report.problems if p["entry_id"] == target} >= {
        "hash_mismatch",
        "balance_mismatch",
    }


def test_changed_amount_with_recomputed_hash_breaks_chain_and_root(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    target = ids["ben-hold0"]
    with sessions() as session:
        proof = ledger.proof(session, entry_id=target)
    entry = proof["entry"]
    forged_amount = entry["amount"] + M
    body = canonical.entry_body(
        entry["kind"],
        entry["counterparty_id"],
        forged_amount,
        entry["hold_id"],
        entry["lot_id"],
        entry["reference"],
        entry["idempotency_key"],
        entry["created_at_us"],
    )
    forged_hash = canonical.link(
        bytes.fromhex(proof["prev_hash"]),
        entry["account_id"],
        entry["seq"],
        entry["posted_after"],
        entry["held_after"] + M,
        entry["debt_after"],
        body,
    )
    forge = "UPDATE ledger_entries SET amount = :a, held_after = held_after + :m, hash = :h WHERE id = :id"
    report = _tampered(
        engine, sessions, signer, forge, {"a": forged_amount, "m": M, "h": forged_hash, "id": target}
    )
    codes = {p["code"] for p in report.problems}
    assert "checkpoint_root_mismatch" in codes
    assert "hash_mismatch" in codes
    # The chain breaks between the forged entry and the next one (same checkpoint).
    assert report.first_bad_entry in (target, ids["ben-capture0"])


def test_deleted_entry_is_named(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    target = ids["ann-hold2"]
    report = _tampered(engine, sessions, signer, "DELETE FROM ledger_entries WHERE id = :id", {"id": target})
    assert report.first_bad_entry == target
    codes = {p["code"] for p in report.problems}
    assert {"sealed_entry_missing", "sequence_gap"} <= codes


def test_swapped_entries_are_named(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    first, second = ids["ben-hold1"], ids["ben-capture1"]
    with tampering(engine) as conn:
        seqs = dict(
            conn.execute(
                text("SELECT id, seq FROM ledger_entries WHERE id IN (:a, :b)"), {"a": first, "b": second}
            ).all()
        )
        conn.execute(text("UPDATE ledger_entries SET seq = 1000000 WHERE id = :a"), {"a": first})
        conn.execute(
            text("UPDATE ledger_entries SET seq = :s WHERE id = :b"), {"s": seqs[first], "b": second}
        )
        conn.execute(
            text("UPDATE ledger_entries SET seq = :s WHERE id = :a"), {"s": seqs[second], "a": first}
        )
    report = _verify(sessions, signer)
    assert report.first_bad_entry == min(first, second)
    assert {p["entry_id"] for p in report.problems if p["code"] == "hash_mismatch"} >= {first, second}


def test_forged_entry_is_named(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    _history(sessions, signer)
    with tampering(engine) as conn:
        account = conn.execute(
            text("SELECT id, seq, posted, head FROM ledger_accounts WHERE user_id = 'ann'")
        ).one()
        forged = conn.execute(
            text(
                "INSERT INTO ledger_entries (account_id, seq, kind, debit_account_id, credit_account_id,"
                " amount, created_at, posted_after, held_after, debt_after, hash) VALUES (:acc, :seq,"
                " 'grant', 1, :acc, :amount, CURRENT_TIMESTAMP, :posted, 0, 0, :hash) RETURNING id"
            ),
            {
                "acc": account.id,
                "seq": account.seq + 1,
                "amount": 500 * M,
                "posted": account.posted + 500 * M,
                "hash": bytes(32),
            },
        ).scalar_one()
        conn.execute(
            text("UPDATE ledger_accounts SET posted = posted + :a, seq = seq + 1 WHERE id = :acc"),
            {"a": 500 * M, "acc": account.id},
        )
    report = _verify(sessions, signer)
    assert report.first_bad_entry == forged
    assert "hash_mismatch" in {p["code"] for p in report.problems if p["entry_id"] == forged}


def test_changed_checkpoint_signature_is_named(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    with tampering(engine) as conn:
        conn.execute(text("UPDATE ledger_checkpoints SET signature = :s WHERE number = 2"), {"s": bytes(64)})
        first_in_second = conn.execute(
            text(
                "SELECT min(l.entry_id) FROM ledger_checkpoint_leaves l JOIN ledger_checkpoints c"
                " ON c.id = l.checkpoint_id WHERE c.number = 2"
            )
        ).scalar_one()
    report = _verify(sessions, signer)
    assert [p["code"] for p in report.problems] == ["checkpoint_signature_invalid"]
    assert report.first_bad_entry == first_in_second
    assert first_in_second == ids["ben-hold0"] - 1  # ben's welcome grant opens the second checkpoint


def test_other_key_fails_verification(sessions: sessionmaker[Session], signer: ledger.Signer) -> None:
    _history(sessions, signer)
    other = ledger.signer_from_key("hmac:another-secret-that-is-long-enough")
    with sessions() as session:
        report = ledger.verify(session, verifier=other.verifier)
    assert not report.ok
    assert {p["code"] for p in report.problems} == {"checkpoint_signature_invalid"}


def test_proof_verifies_for_honest_entry_and_fails_once_tampered(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    ids = _history(sessions, signer)
    public_key = signer.verifier.public_key_pem()
    assert public_key is not None
    assert "PRIVATE" not in public_key
    with sessions() as session:
        proofs = {name: ledger.proof(session, entry_id=entry_id) for name, entry_id in ids.items()}
    assert all(ledger.verify_proof(p, public_key) for p in proofs.values())
    assert not ledger.verify_proof(proofs["ann-hold0"], ledger.signer_from_key("hmac:" + "x" * 32).verifier)
    with tampering(engine) as conn:
        conn.execute(
            text("UPDATE ledger_entries SET amount = amount + 1 WHERE id = :id"), {"id": ids["ann-capture0"]}
        )
    with sessions() as session:
        tampered = ledger.proof(session, entry_id=ids["ann-capture0"])
        neighbour = ledger.proof(session, entry_id=ids["ann-hold0"])
    assert not ledger.verify_proof(tampered, public_key)
    assert ledger.verify_proof(neighbour, public_key)  # other entries' proofs still hold


def test_unsealed_entry_has_no_proof_yet(sessions: sessionmaker[Session]) -> None:
    new_user(sessions, "fresh")
    with sessions() as session:
        entry_id = ledger.transactions(session, user_id="fresh")["items"][0]["id"]
        with pytest.raises(ledger.NotSealed):
            ledger.proof(session, entry_id=entry_id)
        with pytest.raises(ledger.EntryNotFound):
            ledger.proof(session, entry_id=10**9)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_checkpoints SET root = root",
        "DELETE FROM ledger_checkpoint_leaves",
    ],
)
def test_append_only_tables_refuse_update_and_delete(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer, statement: str
) -> None:
    _history(sessions, signer)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    check_ledger(sessions, signer)


# Only PostgreSQL lets ids commit out of order (SQLite serializes writers), so only it runs this.
@pytest.mark.parametrize("backend", [name for name in backends() if name == "postgresql"], indirect=True)
def test_entry_committed_late_is_sealed_later_not_lost(
    engine: Engine, sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    new_user(sessions, "slow")
    new_user(sessions, "quick")
    slow = sessions()
    slow.begin()
    late = place_hold(slow, "slow", M, "s", reference=None)
    with sessions.begin() as session:
        early = place_hold(session, "quick", M, "q", reference=None)
        assert (late.entry_id or 0) < (early.entry_id or 0)
    with sessions.begin() as session:
        checkpoint = ledger.seal(session, signer=signer)
        assert checkpoint is not None
        sealed = session.execute(text("SELECT entry_id FROM ledger_checkpoint_leaves")).scalars().all()
        assert early.entry_id in sealed
        assert late.entry_id not in sealed
    slow.commit()
    slow.close()
    with sessions.begin() as session:
        again = ledger.seal(session, signer=signer)
        assert again is not None
        assert again.size == 1
        assert ledger.verify_proof(ledger.proof(session, entry_id=late.entry_id or 0), signer.verifier)
    check_ledger(sessions, signer)


@pytest.mark.parametrize("backend", [name for name in backends() if name == "postgresql"], indirect=True)
def test_a_seal_while_another_runs_leaves_the_entries_to_it_at_once(
    sessions: sessionmaker[Session], signer: ledger.Signer
) -> None:
    # A seal whose client vanished keeps its lock until the server notices: a second seal must not wait
    # for it (every critical slot stuck there stopped settlement in the chaos suite).
    new_user(sessions, "sealer")
    with sessions.begin() as session:
        place_hold(session, "sealer", M, "a", reference=None)
    first = sessions()
    first.begin()
    assert ledger.seal(first, signer=signer) is not None  # holds the seal lock until it ends
    with sessions.begin() as session:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail here, not hang
        assert ledger.seal(session, signer=signer) is None
    first.rollback()
    first.close()
    with sessions.begin() as session:
        checkpoint = ledger.seal(session, signer=signer)
        assert checkpoint is not None  # what the first left undone is sealed by the next
    check_ledger(sessions, signer)
