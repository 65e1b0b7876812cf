"""Checkpoints: seal unsealed entries under a signed Merkle root; inclusion proofs for clients."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, text

from ledger import canonical, chart, merkle, sql
from ledger.errors import EntryNotFound, NotSealed
from ledger.models import Checkpoint
from ledger.signing import Signer, Verifier, verifier_from_key
from ledger.sql import Executor
from ledger.tables import checkpoint_leaves, checkpoints, entries, unsealed

_SEAL_LOCK = 0x1ED6E5EA1  # pg advisory lock id: one sealer at a time

_PG_DRAIN = text("""
WITH picked AS (
    SELECT entry_id FROM ledger_unsealed ORDER BY entry_id LIMIT :limit FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM ledger_unsealed u USING picked WHERE u.entry_id = picked.entry_id RETURNING u.entry_id
)
SELECT e.id AS entry_id, e.hash FROM gone JOIN ledger_entries e ON e.id = gone.entry_id ORDER BY e.id
""")


def _drain(session: Executor, limit: int) -> list[Any]:
    """Take up to `limit` committed unsealed entries (id, hash) off the queue, in id order.

    Entries of transactions still in flight are not visible yet and stay queued for the next
    seal, so an id that commits after a larger one is sealed later, never lost.
    """
    if sql.dialect(session) == "postgresql":
        # Another seal running: leave it the queue (the next one takes what is left). Waiting for its
        # lock held every caller's slot as long as it lasted, and a holder whose client vanished
        # without closing (a killed host, a dead link) lasts until the server notices: all critical
        # slots stuck there stopped settlement with them (tests/chaos).
        taken = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _SEAL_LOCK})
        if not taken.scalar_one():
            return []
        return list(session.execute(_PG_DRAIN, {"limit": limit}).all())
    rows = session.execute(
        select(entries.c.id.label("entry_id"), entries.c.hash)
        .select_from(unsealed.join(entries, entries.c.id == unsealed.c.entry_id))
        .order_by(unsealed.c.entry_id)
        .limit(limit)
    ).all()
    if rows:  # SQLite has one writer at a time (BEGIN IMMEDIATE): nothing commits meanwhile
        session.execute(delete(unsealed).where(unsealed.c.entry_id <= rows[-1].entry_id))
    return list(rows)


def seal(
    session: Executor, *, signer: Signer, now: datetime | None = None, limit: int = 100_000
) -> Checkpoint | None:
    """Seal up to `limit` unsealed entries into the next signed checkpoint; None if none waited (or
    another seal runs: it takes them, or the next one does)."""
    rows = _drain(session, limit)
    if not rows:
        return None
    now = now or datetime.now(UTC)
    previous = session.execute(
        select(checkpoints.c.number, checkpoints.c.hash).order_by(checkpoints.c.number.desc()).limit(1)
    ).one_or_none()
    number = previous.number + 1 if previous else 1
    prev_hash = previous.hash if previous else canonical.ZERO_HASH
    root = merkle.root([row.hash for row in rows])
    message = canonical.checkpoint_bytes(number, prev_hash, root, len(rows), canonical.micros(now))
    checkpoint = Checkpoint(
        id=0, number=number, prev_hash=prev_hash, root=root, size=len(rows), created_at=now,
        algorithm=signer.algorithm, key_id=signer.key_id, signature=signer.sign(message),
        hash=hashlib.sha256(message).digest(),
    )
    values = {name: value for name, value in asdict(checkpoint).items() if name != "id"}
    checkpoint_id = int(
        session.execute(insert(checkpoints).values(**values).returning(checkpoints.c.id)).scalar_one()
    )
    session.execute(
        insert(checkpoint_leaves),
        [
            {"entry_id": row.entry_id, "checkpoint_id": checkpoint_id, "leaf_index": index}
            for index, row in enumerate(rows)
        ],
    )
    return replace(checkpoint, id=checkpoint_id)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def list_checkpoints(session: Executor, *, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """Signed checkpoints, newest first, below an optional checkpoint number (hashes as hex)."""
    query = select(checkpoints).order_by(checkpoints.c.number.desc()).limit(limit)
    if before is not None:
        query = query.where(checkpoints.c.number < before)
    return [
        {"number": row.number, "size": row.size, "root": row.root.hex(), "prev_hash": row.prev_hash.hex(),
         "hash": row.hash.hex(), "algorithm": row.algorithm, "key_id": row.key_id,
         "created_at": canonical.utc(row.created_at)}
        for row in session.execute(query)
    ]


def proof(session: Executor, *, entry_id: int) -> dict[str, Any]:
    """An inclusion proof of the entry in its signed checkpoint, checkable with verify_proof."""
    leaf = session.execute(
        select(checkpoint_leaves.c.checkpoint_id, checkpoint_leaves.c.leaf_index).where(
            checkpoint_leaves.c.entry_id == entry_id
        )
    ).one_or_none()
    entry = session.execute(select(entries).where(entries.c.id == entry_id)).one_or_none()
    if entry is None:
        raise EntryNotFound(f"no ledger entry {entry_id}")
    if leaf is None:
        raise NotSealed(f"entry {entry_id} is not sealed yet")
    prev = session.execute(
        select(entries.c.hash).where(entries.c.account_id == entry.account_id, entries.c.seq == entry.seq - 1)
    ).scalar_one_or_none()
    hashes = session.execute(
        select(entries.c.hash)
        .select_from(checkpoint_leaves.join(entries, entries.c.id == checkpoint_leaves.c.entry_id))
        .where(checkpoint_leaves.c.checkpoint_id == leaf.checkpoint_id)
        .order_by(checkpoint_leaves.c.leaf_index)
    ).scalars().all()
    cp = session.execute(select(checkpoints).where(checkpoints.c.id == leaf.checkpoint_id)).one()
    return {
        "entry": {
            "id": entry.id, "account_id": entry.account_id, "seq": entry.seq, "kind": entry.kind,
            "counterparty_id": chart.counterparty(
                entry.kind, entry.account_id, entry.debit_account_id, entry.credit_account_id
            ),
            "amount": entry.amount, "hold_id": entry.hold_id, "lot_id": entry.lot_id,
            "reference": entry.reference, "idempotency_key": entry.idempotency_key,
            "created_at_us": canonical.micros(entry.created_at), "posted_after": entry.posted_after,
            "held_after": entry.held_after, "debt_after": entry.debt_after,
        },
        "prev_hash": _hex(prev if entry.seq > 1 else canonical.ZERO_HASH),
        "entry_hash": _hex(entry.hash),
        "leaf_index": leaf.leaf_index,
        "tree_size": len(hashes),
        "audit_path": [value.hex() for value in merkle.audit_path(list(hashes), leaf.leaf_index)],
        "checkpoint": {
            "number": cp.number, "prev_hash": _hex(cp.prev_hash), "root": _hex(cp.root), "size": cp.size,
            "created_at_us": canonical.micros(cp.created_at), "algorithm": cp.algorithm,
            "key_id": cp.key_id, "signature": _hex(cp.signature),
        },
    }


def verify_proof(proof: dict[str, Any], public_key: Verifier | str) -> bool:
    """True when the proof's entry is in its checkpoint and the checkpoint is signed by the key.

    Needs nothing from the database: the entry is rehashed from its fields, folded up the audit
    path to the root, and the checkpoint signature is checked with the public key (PEM; for an
    HMAC ledger, the `hmac:<secret>` key).
    """
    try:
        verifier = public_key if isinstance(public_key, Verifier) else verifier_from_key(public_key)
        entry, cp = proof["entry"], proof["checkpoint"]
        body = canonical.entry_body(
            entry["kind"], entry["counterparty_id"], entry["amount"], entry["hold_id"], entry["lot_id"],
            entry["reference"], entry["idempotency_key"], entry["created_at_us"],
        )
        entry_hash = canonical.link(
            bytes.fromhex(proof["prev_hash"]), entry["account_id"], entry["seq"], entry["posted_after"],
            entry["held_after"], entry["debt_after"], body,
        )
        path = [bytes.fromhex(value) for value in proof["audit_path"]]
        root = merkle.root_from_path(entry_hash, proof["leaf_index"], cp["size"], path)
        if root is None or root.hex() != cp["root"] or cp["key_id"] != verifier.key_id:
            return False
        message = canonical.checkpoint_bytes(
            cp["number"], bytes.fromhex(cp["prev_hash"]), root, cp["size"], cp["created_at_us"]
        )
        return verifier.verify(message, bytes.fromhex(cp["signature"]))
    except (KeyError, TypeError, ValueError):
        return False
