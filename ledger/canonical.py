"""Canonical bytes and hashes of entries and checkpoints (fixed field order, ints, UTC microseconds)."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime, timedelta

ZERO_HASH = bytes(32)
ENTRY_VERSION = "creditflow.entry.v1"
CHECKPOINT_VERSION = "creditflow.checkpoint.v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INT = struct.Struct(">q")
_LEN = struct.Struct(">I")
_LINK = struct.Struct(">qqqqq")

Field = str | int | bytes | None


def utc(moment: datetime | str) -> datetime:
    """The same instant as an aware UTC datetime; naive values (SQLite) are read as UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def micros(moment: datetime | str) -> int:
    """Microseconds since the Unix epoch (UTC) of a timestamp; naive values are read as UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _field(value: Field) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):
        raise TypeError("booleans have no canonical form; use an int")
    if isinstance(value, int):
        return b"I" + _INT.pack(value)
    data = value.encode() if isinstance(value, str) else value
    tag = b"S" if isinstance(value, str) else b"B"
    return tag + _LEN.pack(len(data)) + data


def canonical(*fields: Field) -> bytes:
    """Unambiguous bytes of a tuple of fields: each tagged, strings and bytes length-prefixed."""
    return b"".join(_field(value) for value in fields)


def chained(prev: bytes, *fields: Field) -> bytes:
    """A link of an append-only log: SHA-256 of the previous link and the canonical bytes of `fields`."""
    return hashlib.sha256(prev + canonical(*fields)).digest()


def _text(value: str | None) -> bytes:
    if value is None:
        return b"N"
    data = value.encode()
    return b"S" + _LEN.pack(len(data)) + data


def entry_body(  # noqa: PLR0917 - a fixed, ordered field list is the point
    kind: str,
    counterparty_id: int,
    amount: int,
    hold_id: str | None,
    lot_id: int | None,
    reference: str | None,
    idempotency_key: str | None,
    created_at_us: int,
) -> bytes:
    """SHA-256 of what an entry says happened (everything but its place in the account chain).

    Same bytes as canonical(ENTRY_VERSION, kind, counterparty_id, amount, hold_id, lot_id,
    reference, idempotency_key, created_at_us), spelled out because verify() runs it per entry.
    """
    pack_len, pack_int = _LEN.pack, _INT.pack
    data = b"".join((
        _ENTRY_PREFIX,
        _KINDS.get(kind) or _text(kind),
        b"I", pack_int(counterparty_id), b"I", pack_int(amount),
        b"N" if hold_id is None else b"S" + pack_len(len(h := hold_id.encode())) + h,
        b"N" if lot_id is None else b"I" + pack_int(lot_id),
        b"N" if reference is None else b"S" + pack_len(len(r := reference.encode())) + r,
        b"N" if idempotency_key is None else b"S" + pack_len(len(k := idempotency_key.encode())) + k,
        b"I", pack_int(created_at_us),
    ))
    return hashlib.sha256(data).digest()


_ENTRY_PREFIX = canonical(ENTRY_VERSION)
_KINDS = {kind: _text(kind) for kind in (
    "grant", "purchase", "adjust_credit", "capture", "lot_expiry", "refund", "clawback", "adjust_debit",
    "hold", "void", "expire", "debt", "debt_repayment",
)}


def link(  # noqa: PLR0917 - mirrors the `ledger_link` SQL function
    prev: bytes, account_id: int, seq: int, posted: int, held: int, debt: int, body: bytes) -> bytes:
    """An entry's hash: chains the previous hash, its position, the balances after it and its body.

    The database computes the same value with the `ledger_link` SQL function inside the
    account row update; this is the reference implementation verification relies on.
    """
    return hashlib.sha256(prev + _LINK.pack(account_id, seq, posted, held, debt) + body).digest()


def checkpoint_bytes(number: int, prev_hash: bytes, root: bytes, size: int, created_at_us: int) -> bytes:
    """The bytes a checkpoint signature covers."""
    return canonical(CHECKPOINT_VERSION, number, prev_hash, root, size, created_at_us)


def checkpoint_hash(number: int, prev_hash: bytes, root: bytes, size: int, created_at_us: int) -> bytes:
    """The hash the next checkpoint chains to."""
    return hashlib.sha256(checkpoint_bytes(number, prev_hash, root, size, created_at_us)).digest()
