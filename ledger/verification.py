"""verify(): recompute every entry hash and chain, balances, zero sum, checkpoint roots and signatures.

One streamed pass in entry id order (an account's entries have increasing ids, since each is
inserted under the account's row lock), merge-joined with the checkpoint leaves and the sealing
queue, so each checkpoint's Merkle root is rebuilt as soon as its last leaf goes by. Memory is
per account and per open checkpoint, not per entry.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import BigInteger, cast, exists, extract, select
from sqlalchemy.orm import Session

from ledger import canonical, chart, merkle, sql
from ledger.models import VerifyReport
from ledger.signing import Signer, Verifier
from ledger.sql import Executor
from ledger.tables import accounts, checkpoint_leaves, checkpoints, entries, unsealed

_MAX_PROBLEMS = 100
_SYSTEM_IDS = frozenset(chart.SYSTEM_ACCOUNTS.values())
_CREDIT, _DEBIT, _PENDING = chart.CREDIT_KINDS, chart.DEBIT_KINDS, chart.PENDING_KINDS
_ALL, _DEBT = chart.ALL_KINDS, chart.DEBT


def _created_us(session: Executor) -> Any:
    """created_at as epoch microseconds; PostgreSQL computes it exactly (numeric): no datetime per row."""
    if sql.dialect(session) == "postgresql":
        return cast(extract("epoch", entries.c.created_at) * 1_000_000, BigInteger)
    return entries.c.created_at


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


def _stream(session: Executor, statement: Any, batch: int) -> Iterator[Any]:
    """Rows as plain tuples, streamed; on PostgreSQL through a binary server-side cursor."""
    connection = sql.connection(session)
    if connection.dialect.name != "postgresql":
        yield from session.execute(statement, execution_options={"yield_per": batch})
        return
    compiled = statement.compile(dialect=connection.dialect)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    cursor: Any = raw.cursor(name=f"ledger_verify_{uuid.uuid4().hex[:8]}", binary=True)  # type: ignore[call-arg]
    try:
        cursor.execute(str(compiled), compiled.params)
        yield from _prefetched(cursor, batch)
    finally:
        cursor.close()


def _prefetched(cursor: Any, batch: int) -> Iterator[Any]:
    """The cursor's rows, the next batch fetched by a helper thread while this one is checked.

    Fetching waits on the server with the GIL released, so the database's work and our hashing overlap
    instead of taking turns (about a third of verify's time)."""
    batches: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(batch)
                _put(batches, rows, stop)
                if not rows:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            _put(batches, exc, stop)

    fetcher = threading.Thread(target=fetch, name="ledger-verify-fetch", daemon=True)
    fetcher.start()
    try:
        while True:
            rows = batches.get()
            if isinstance(rows, BaseException):
                raise rows
            if not rows:
                return
            yield from rows
    finally:
        stop.set()
        fetcher.join()


def _put(batches: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            batches.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class _Checkpoints:
    """Checkpoint rows checked up front (chain, hash, signature); roots as their leaves arrive."""

    def __init__(self, session: Executor, problems: _Problems, verifier: Verifier) -> None:
        self.problems = problems
        ordered = select(checkpoints).order_by(checkpoints.c.number)
        self.rows = {row.id: row for row in session.execute(ordered)}
        self.leaves: dict[int, list[tuple[int, bytes, int]]] = {}
        self.header_problems: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        prev_hash, expected = canonical.ZERO_HASH, 1
        for cp in self.rows.values():
            found: list[tuple[str, dict[str, Any]]] = []
            message = canonical.checkpoint_bytes(
                cp.number, cp.prev_hash, cp.root, cp.size, canonical.micros(cp.created_at)
            )
            if cp.number != expected or cp.prev_hash != prev_hash:
                found.append(("checkpoint_chain_broken", {}))
            if hashlib.sha256(message).digest() != cp.hash:
                found.append(("checkpoint_hash_mismatch", {}))
            if cp.key_id != verifier.key_id or not verifier.verify(message, cp.signature):
                found.append(("checkpoint_signature_invalid", {"key_id": cp.key_id}))
            self.header_problems[cp.id] = found
            prev_hash, expected = cp.hash, cp.number + 1

    def finish(self, checkpoint_id: int, missing: tuple[int, ...] = ()) -> None:
        """Compare the rebuilt root; name the checkpoint's first known-bad entry, else its first."""
        bucket = sorted(self.leaves.pop(checkpoint_id, []))
        cp = self.rows.get(checkpoint_id)
        ids = [entry_id for _, _, entry_id in bucket] + list(missing)
        add = self.problems.add
        first = min(set(ids) & self.problems.bad_entries or ids or [0]) or None
        if cp is None:
            add("leaf_without_checkpoint", first, checkpoint_id=checkpoint_id)
            return
        self.problems.report.checkpoints_checked += 1
        for code, detail in self.header_problems.pop(checkpoint_id, []):
            add(code, first, checkpoint=cp.number, **detail)
        in_place = all(index == position for position, (index, _, _) in enumerate(bucket))
        if not in_place or len(bucket) != cp.size or merkle.root([h for _, h, _ in bucket]) != cp.root:
            add("checkpoint_root_mismatch", first, checkpoint=cp.number, leaves=len(bucket), size=cp.size)

    def close(self, session: Executor) -> None:
        """Leaves whose entry is gone, then every checkpoint not completed by the stream."""
        missing: dict[int, list[int]] = {}
        gone = ~exists().where(entries.c.id == checkpoint_leaves.c.entry_id)
        query = select(checkpoint_leaves.c.entry_id, checkpoint_leaves.c.checkpoint_id).where(gone)
        for entry_id, checkpoint_id in session.execute(query):
            self.problems.add("sealed_entry_missing", entry_id, checkpoint_id=checkpoint_id)
            missing.setdefault(checkpoint_id, []).append(entry_id)
        for checkpoint_id in list(self.leaves) + [c for c in self.rows if c in self.header_problems]:
            if checkpoint_id in self.leaves or checkpoint_id in self.header_problems:
                self.finish(checkpoint_id, tuple(missing.get(checkpoint_id, ())))


# The per-entry loop stays inline on purpose: function calls per entry would cost the >= 100k
# entries/s verify has to sustain.
def _check_entries(  # noqa: PLR0912, PLR0915
    session: Executor, problems: _Problems, cps: _Checkpoints, batch: int
) -> None:
    """Hashes, links, sequence, legs, balances, sealing; then cached balances and the zero sum."""
    system: dict[int, int] = dict.fromkeys(_SYSTEM_IDS, 0)
    statement = (
        select(
            entries.c.id, entries.c.account_id, entries.c.seq, entries.c.kind, entries.c.debit_account_id,
            entries.c.credit_account_id, entries.c.amount, entries.c.hold_id, entries.c.lot_id,
            entries.c.reference, entries.c.idempotency_key, _created_us(session), entries.c.posted_after,
            entries.c.held_after, entries.c.debt_after, entries.c.hash, checkpoint_leaves.c.checkpoint_id,
            checkpoint_leaves.c.leaf_index, unsealed.c.entry_id,
        )
        .select_from(
            entries.outerjoin(checkpoint_leaves, checkpoint_leaves.c.entry_id == entries.c.id).outerjoin(
                unsealed, unsealed.c.entry_id == entries.c.id
            )
        )
        .order_by(entries.c.id)
    )
    report, add = problems.report, problems.add
    open_leaves, sizes, finish = cps.leaves, {i: row.size for i, row in cps.rows.items()}, cps.finish
    body_of, link_of, micros = canonical.entry_body, canonical.link, canonical.micros
    # Per account: [prev hash, seq, posted, held, debt, last entry id, pending holds]
    state: dict[int, list[Any]] = {}
    for (eid, account_id, eseq, kind, debit, credit, amount, hold_id, lot_id, reference, key, created,
         posted_after, held_after, debt_after, stored, checkpoint_id, leaf_index, queued
         ) in _stream(session, statement, batch):
        report.entries_checked += 1
        st = state.get(account_id)
        if st is None:
            st = state[account_id] = [canonical.ZERO_HASH, 0, 0, 0, 0, None, {}]
        prev_hash, seq, posted, held, debt, _, pending = st
        if eseq != seq + 1:
            add("sequence_gap", eid, account_id=account_id, expected_seq=seq + 1, seq=eseq)
        if kind in _CREDIT:
            cp, legs_ok = debit, credit == account_id
        elif kind == "debt_repayment":
            cp, legs_ok = debit, credit == _DEBT
        elif kind == "debt":
            cp, legs_ok = credit, debit == _DEBT
        else:
            cp, legs_ok = credit, debit == account_id and kind in _ALL
        created_us = created if created.__class__ is int else micros(created)
        body = body_of(kind, cp, amount, hold_id, lot_id, reference, key, created_us)
        if link_of(prev_hash, account_id, eseq, posted_after, held_after, debt_after, body) != stored:
            add("hash_mismatch", eid, account_id=account_id, seq=eseq)
        if not legs_ok or cp not in _SYSTEM_IDS:
            add("bad_legs", eid, kind=kind, debit=debit, credit=credit)
        dp = dh = dd = 0
        if kind in _CREDIT:
            dp = amount
        elif kind in _DEBIT:
            dp = -amount
            if kind == "capture":
                dh = -pending.pop(hold_id, 0)
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
        if posted + dp != posted_after or held + dh != held_after or debt + dd != debt_after:
            add("balance_mismatch", eid, account_id=account_id, seq=eseq)
        if held_after < 0 or posted_after < held_after or debt_after < 0:
            add("negative_balance", eid, account_id=account_id, seq=eseq)
        if kind not in _PENDING:
            if debit in system:
                system[debit] -= amount
            if credit in system:
                system[credit] += amount
        st[0], st[1], st[2], st[3], st[4], st[5] = stored, eseq, posted_after, held_after, debt_after, eid
        if checkpoint_id is not None:
            bucket = open_leaves.get(checkpoint_id)
            if bucket is None:
                bucket = open_leaves[checkpoint_id] = []
            bucket.append((leaf_index, stored, eid))
            if len(bucket) == sizes.get(checkpoint_id):
                finish(checkpoint_id)
        elif queued is None:
            add("entry_neither_sealed_nor_queued", eid)
    _check_accounts(session, problems, state, system)


def _check_accounts(
    session: Executor, problems: _Problems, state: dict[int, list[Any]], system: dict[int, int]
) -> None:
    """Cached balance rows against the balances rebuilt from entries; the zero sum."""
    user_total = 0
    columns = (accounts.c.id, accounts.c.kind, accounts.c.posted, accounts.c.held, accounts.c.debt,
               accounts.c.seq, accounts.c.head)
    known = set()
    for account_id, kind, posted, held, debt, seq, head in session.execute(select(*columns)):
        known.add(account_id)
        st = state.get(account_id)
        if kind != "user":
            continue
        if st is None:
            if seq or posted or held or debt:
                problems.add("cached_balance_without_entries", None, account_id=account_id)
            continue
        user_total += st[2]
        if (posted, held, debt, seq, head) != (st[2], st[3], st[4], st[1], st[0]):
            problems.add("cached_balance_mismatch", st[5], account_id=account_id,
                         cached={"posted": posted, "held": held, "debt": debt, "seq": seq},
                         from_entries={"posted": st[2], "held": st[3], "debt": st[4], "seq": st[1]})
    for account_id, st in state.items():
        if account_id not in known or account_id in _SYSTEM_IDS:
            problems.add("unknown_account", st[5], account_id=account_id)
    if user_total + sum(system.values()) != 0:
        problems.add("zero_sum_violated", None, total=user_total + sum(system.values()))


def verify(session: Executor, *, verifier: Verifier | Signer, batch: int = 20_000) -> VerifyReport:
    """Check the whole ledger; the report names the first bad entry (lowest id) if any.

    Every check must see one snapshot, or a write committing mid-run would look like a mismatch
    between entries and cached balances: given a session with no transaction yet, verify reads
    in a REPEATABLE READ transaction on PostgreSQL (SQLite transactions are already serialized);
    given a Connection, the caller opened that snapshot (orchestration's `uow(snapshot=True)`).
    """
    if isinstance(verifier, Signer):
        verifier = verifier.verifier
    if (
        isinstance(session, Session)
        and not session.in_transaction()
        and session.get_bind().dialect.name == "postgresql"
    ):
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    started = time.perf_counter()
    report = VerifyReport()
    problems = _Problems(report)
    cps = _Checkpoints(session, problems, verifier)
    _check_entries(session, problems, cps, batch)
    cps.close(session)
    orphan = ~exists().where(entries.c.id == unsealed.c.entry_id)
    for entry_id in session.execute(select(unsealed.c.entry_id).where(orphan)).scalars():
        problems.add("queued_entry_missing", entry_id)
    report.seconds = time.perf_counter() - started
    return report
