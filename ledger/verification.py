"""verify(): recompute every entry hash and chain, balances, zero sum, checkpoint roots and signatures."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ledger import canonical, chart, merkle
from ledger.models import VerifyReport
from ledger.signing import Verifier
from ledger.tables import accounts, checkpoint_leaves, checkpoints, entries, unsealed

_MAX_PROBLEMS = 100
_SYSTEM_IDS = frozenset(chart.SYSTEM_ACCOUNTS.values())
_CREDIT, _DEBIT, _PENDING = chart.CREDIT_KINDS, chart.DEBIT_KINDS, chart.PENDING_KINDS


class _Problems:
    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.bad_entries: set[int] = set()

    def add(self, code: str, entry_id: int | None, **detail: Any) -> None:
        report = self.report
        report.ok = False
        if entry_id is not None:
            self.bad_entries.add(entry_id)
        if entry_id is not None and (report.first_bad_entry is None or entry_id < report.first_bad_entry):
            report.first_bad_entry = entry_id
        if len(report.problems) < _MAX_PROBLEMS:
            report.problems.append({"code": code, "entry_id": entry_id, **detail})


def _stream(session: Session, statement: Any, batch: int) -> Iterator[Any]:
    """Rows as plain tuples, streamed; on PostgreSQL a binary server-side cursor (verify's hot path)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield from session.execute(statement, execution_options={"yield_per": batch}).tuples()
        return
    compiled = statement.compile(dialect=connection.dialect)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    with raw.cursor(name=f"ledger_verify_{uuid.uuid4().hex[:8]}", binary=True) as cursor:  # type: ignore[call-arg]
        cursor.itersize = batch
        cursor.execute(str(compiled), compiled.params)
        yield from cursor


# The per-entry loop stays inline on purpose: function calls per entry would cost the >= 100k
# entries/s verify has to sustain.
def _check_entries(  # noqa: PLR0912, PLR0915
    session: Session, problems: _Problems, batch: int
) -> dict[int, int]:
    """Pass 1, in chain order: hashes, links, sequence, legs, balances; returns system totals."""
    cached = {
        row.id: row
        for row in session.execute(
            select(accounts.c.id, accounts.c.kind, accounts.c.posted, accounts.c.held, accounts.c.debt,
                   accounts.c.seq, accounts.c.head)
        )
    }
    system: dict[int, int] = dict.fromkeys(_SYSTEM_IDS, 0)
    user_total = 0
    statement = select(
        entries.c.id, entries.c.account_id, entries.c.seq, entries.c.kind, entries.c.debit_account_id,
        entries.c.credit_account_id, entries.c.amount, entries.c.hold_id, entries.c.lot_id,
        entries.c.reference, entries.c.idempotency_key, entries.c.created_at, entries.c.posted_after,
        entries.c.held_after, entries.c.debt_after, entries.c.hash,
    ).order_by(entries.c.account_id, entries.c.seq)
    report, add = problems.report, problems.add
    body_of, link_of, micros, legs = canonical.entry_body, canonical.link, canonical.micros, chart.legs
    current, prev_hash, seq, posted, held, debt, last_id = None, b"", 0, 0, 0, 0, None
    pending: dict[str, int] = {}
    seen: set[int] = set()

    def close_account() -> None:
        if current is None:
            return
        row = cached.get(current)
        if row is None or row.kind != "user":
            add("unknown_account", last_id, account_id=current)
        elif (row.posted, row.held, row.debt, row.seq, row.head) != (posted, held, debt, seq, prev_hash):
            add("cached_balance_mismatch", last_id, account_id=current,
                cached={"posted": row.posted, "held": row.held, "debt": row.debt, "seq": row.seq},
                from_entries={"posted": posted, "held": held, "debt": debt, "seq": seq})

    for (eid, account_id, eseq, kind, debit, credit, amount, hold_id, lot_id, reference, key,
         created_at, posted_after, held_after, debt_after, stored) in _stream(session, statement, batch):
        report.entries_checked += 1
        if account_id != current:
            close_account()
            user_total += posted
            seen.add(account_id)
            current, prev_hash, seq, posted, held, debt = account_id, canonical.ZERO_HASH, 0, 0, 0, 0
            pending = {}
        if eseq != seq + 1:
            add("sequence_gap", eid, account_id=account_id, expected_seq=seq + 1, seq=eseq)
        cp = debit if kind in _CREDIT or kind == "debt_repayment" else credit
        body = body_of(kind, cp, amount, hold_id, lot_id, reference, key, micros(created_at))
        if link_of(prev_hash, account_id, eseq, posted_after, held_after, debt_after, body) != stored:
            add("hash_mismatch", eid, account_id=account_id, seq=eseq)
        known = kind in chart.ALL_KINDS and cp in _SYSTEM_IDS
        if not known or legs(kind, account_id, cp) != (debit, credit):
            add("bad_legs", eid, kind=kind, debit=debit, credit=credit)
        dp = dh = dd = 0
        if kind in _CREDIT:
            dp = amount
        elif kind in _DEBIT:
            dp = -amount
            if kind == "capture":
                dh = -pending.pop(hold_id, 0) if hold_id in pending else 0
                if dh == 0:
                    add("capture_without_pending_hold", eid, hold_id=hold_id)
        elif kind == "hold":
            dh = amount
            pending[hold_id] = amount
        elif kind in _PENDING:
            if pending.pop(hold_id, None) != amount:
                add("release_without_pending_hold", eid, hold_id=hold_id)
            dh = -amount
        elif kind == "debt":
            dd = amount
        elif kind == "debt_repayment":
            dd = -amount
        if (posted + dp, held + dh, debt + dd) != (posted_after, held_after, debt_after):
            add("balance_mismatch", eid, account_id=account_id, seq=eseq)
        if held_after < 0 or posted_after < held_after or debt_after < 0:
            add("negative_balance", eid, account_id=account_id, seq=eseq)
        if kind not in _PENDING:
            if debit in system:
                system[debit] -= amount
            if credit in system:
                system[credit] += amount
        prev_hash, seq, posted, held, debt, last_id = stored, eseq, posted_after, held_after, debt_after, eid
    close_account()
    user_total += posted
    for account_id, row in cached.items():
        if row.kind == "user" and account_id not in seen and (row.seq or row.posted or row.held or row.debt):
            add("cached_balance_without_entries", None, account_id=account_id)
    if user_total + sum(system.values()) != 0:
        add("zero_sum_violated", None, total=user_total + sum(system.values()))
    return system


def _check_checkpoints(session: Session, problems: _Problems, verifier: Verifier, batch: int) -> None:
    """Pass 2: each checkpoint's leaves, Merkle root, signature and chain to the previous one."""
    report, add = problems.report, problems.add
    leaves = _stream(session, select(
        checkpoint_leaves.c.checkpoint_id, checkpoint_leaves.c.leaf_index, checkpoint_leaves.c.entry_id,
        entries.c.hash,
    ).select_from(checkpoint_leaves.outerjoin(entries, entries.c.id == checkpoint_leaves.c.entry_id))
        .order_by(checkpoint_leaves.c.checkpoint_id, checkpoint_leaves.c.leaf_index), batch)
    pending_leaf = next(leaves, None)
    prev_hash, expected_number = canonical.ZERO_HASH, 1
    for cp in session.execute(select(checkpoints).order_by(checkpoints.c.number)):
        report.checkpoints_checked += 1
        hashes: list[bytes] = []
        ids: list[int] = []
        while pending_leaf is not None:
            checkpoint_id, leaf_index, entry_id, entry_hash = pending_leaf
            if checkpoint_id != cp.id:
                break
            if leaf_index != len(hashes):
                add("leaf_out_of_place", entry_id, checkpoint=cp.number)
            if entry_hash is None:
                add("sealed_entry_missing", entry_id, checkpoint=cp.number)
            hashes.append(entry_hash or b"")
            ids.append(entry_id)
            pending_leaf = next(leaves, None)
        first = min(set(ids) & problems.bad_entries or ids or [0]) or None
        message = canonical.checkpoint_bytes(
            cp.number, cp.prev_hash, cp.root, cp.size, canonical.micros(cp.created_at)
        )
        if cp.number != expected_number or cp.prev_hash != prev_hash:
            add("checkpoint_chain_broken", first, checkpoint=cp.number)
        if hashlib.sha256(message).digest() != cp.hash:
            add("checkpoint_hash_mismatch", first, checkpoint=cp.number)
        if len(hashes) != cp.size or not hashes or merkle.root(hashes) != cp.root:
            add("checkpoint_root_mismatch", first, checkpoint=cp.number, leaves=len(hashes), size=cp.size)
        if cp.key_id != verifier.key_id or not verifier.verify(message, cp.signature):
            add("checkpoint_signature_invalid", first, checkpoint=cp.number, key_id=cp.key_id)
        prev_hash, expected_number = cp.hash, cp.number + 1
    while pending_leaf is not None:
        add("leaf_without_checkpoint", pending_leaf.entry_id, checkpoint_id=pending_leaf.checkpoint_id)
        pending_leaf = next(leaves, None)


def _check_sealing_queue(session: Session, problems: _Problems) -> None:
    """Every entry is sealed or queued for sealing; the queue names no missing entry."""
    sealed = exists().where(checkpoint_leaves.c.entry_id == entries.c.id)
    queued = exists().where(unsealed.c.entry_id == entries.c.id)
    for entry_id in session.execute(select(entries.c.id).where(~sealed, ~queued)).scalars():
        problems.add("entry_neither_sealed_nor_queued", entry_id)
    orphan = ~exists().where(entries.c.id == unsealed.c.entry_id)
    for entry_id in session.execute(select(unsealed.c.entry_id).where(orphan)).scalars():
        problems.add("queued_entry_missing", entry_id)


def verify(session: Session, *, verifier: Verifier, batch: int = 20_000) -> VerifyReport:
    """Check the whole ledger; the report names the first bad entry (lowest id) if any."""
    started = time.perf_counter()
    report = VerifyReport()
    problems = _Problems(report)
    _check_entries(session, problems, batch)
    _check_checkpoints(session, problems, verifier, batch)
    _check_sealing_queue(session, problems)
    report.seconds = time.perf_counter() - started
    return report
