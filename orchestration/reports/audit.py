"""The admin audit log: who did what to what, when, with the state before and after.

Append-only (a trigger refuses UPDATE and DELETE) and one hash chain: each row's hash is the ledger's
own link function (`ledger.canonical.chained`) over the previous row's hash and the row's fields, so
`creditflow ledger verify` recomputes it with the entries. A row is written in the same transaction as
the action it records whenever the action is ours to run (grants, adjustments), and right after it
otherwise (a refund talks to a provider between its own transactions).

Nothing secret or personal enters it: callers hand explicit views (ids, statuses, amounts), and any
key below that could carry a prompt, a credential or an address is dropped before hashing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text

import ledger
from ledger import canonical
from orchestration.reports.tables import audit_log
from orchestration.services import Services

AUDIT_VERSION = "creditflow.audit.v1"
# Keys whose values may be a prompt, a credential or personal data: never stored.
FORBIDDEN = frozenset(
    {
        "prompt",
        "messages",
        "content",
        "params",
        "args",
        "kwargs",
        "secret",
        "api_key",
        "key",
        "token",
        "password",
        "email",
        "external_id",
        "idempotency_key",
        "address",
        "deposit_address",
    }
)
# One writer at a time on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises): admin actions are rare.
_LOCK = text("SELECT pg_advisory_xact_lock(7460301)")
_MAX_PROBLEMS = 100


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items() if str(k).lower() not in FORBIDDEN}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, datetime):
        return canonical.utc(value).isoformat()
    return value


def _json(value: Any) -> str:
    return json.dumps(_scrub(value), sort_keys=True, separators=(",", ":"), default=str)


def _link(prev: bytes, row: Any) -> bytes:
    return canonical.chained(
        prev,
        AUDIT_VERSION,
        row.seq,
        row.actor_id,
        row.actor_role,
        row.action,
        row.target,
        row.reason,
        row.before,
        row.after,
        canonical.micros(row.created_at),
    )


@dataclass(frozen=True)
class Actor:
    """Who acts: the admin's opaque user id and role (never their email or token)."""

    user_id: str
    role: str = "admin"


def record(
    db: Connection,
    *,
    actor: Actor,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> int:
    """Append one audit row in the caller's transaction (take it last: after any account lock); its seq."""
    if db.dialect.name == "postgresql":
        db.execute(_LOCK)
    last = db.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, canonical.ZERO_HASH)
    moment = canonical.utc(now) if now else datetime.now(UTC)
    row = _Row(
        seq, actor.user_id, actor.role, action, target[:200], reason, _json(before), _json(after), moment
    )
    db.execute(insert(audit_log).values(**row.values(), hash=_link(prev, row)))
    return seq


@dataclass(frozen=True)
class _Row:
    seq: int
    actor_id: str
    actor_role: str
    action: str
    target: str
    reason: str | None
    before: str
    after: str
    created_at: datetime

    def values(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Pending:
    """What an action that runs its own transactions reports to `audited` once done."""

    after: Any = None
    before: Any = None
    target: str | None = None


@contextmanager
def audited(
    services: Services,
    *,
    actor: Actor,
    action: str,
    target: str,
    before: Any = None,
    reason: str | None = None,
) -> Iterator[Pending]:
    """Record an action that commits on its own: the row is written after the block succeeds."""
    pending = Pending(before=before)
    yield pending
    with services.uow() as db:
        record(
            db,
            actor=actor,
            action=action,
            target=pending.target or target,
            before=pending.before,
            after=pending.after,
            reason=reason,
        )


def entries(
    services: Services,
    *,
    limit: int,
    before_seq: int | None = None,
    action: str | None = None,
    actor_id: str | None = None,
    target: str | None = None,
) -> list[dict[str, Any]]:
    """Audit rows newest first, below an optional seq cursor, filtered by action, actor or target."""
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(audit_log.c.seq < before_seq)
    for column, value in (
        (audit_log.c.action, action),
        (audit_log.c.actor_id, actor_id),
        (audit_log.c.target, target),
    ):
        if value is not None:
            query = query.where(column == value)
    with services.uow(autocommit=True) as db:
        rows = db.execute(query).all()
    return [view(row) for row in rows]


def view(row: Any) -> dict[str, Any]:
    """An audit row as the API shows it (before and after parsed back)."""
    return {
        "seq": row.seq,
        "actor_id": row.actor_id,
        "actor_role": row.actor_role,
        "action": row.action,
        "target": row.target,
        "reason": row.reason,
        "before": json.loads(row.before),
        "after": json.loads(row.after),
        "created_at": canonical.utc(row.created_at),
        "hash": bytes(row.hash).hex(),
    }


@dataclass
class AuditReport:
    """What verifying the audit chain found."""

    ok: bool = True
    rows_checked: int = 0
    first_bad_seq: int | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    def add(self, code: str, seq: int) -> None:
        """Note one problem (the first bad row is the lowest seq)."""
        self.ok = False
        if self.first_bad_seq is None or seq < self.first_bad_seq:
            self.first_bad_seq = seq
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append({"code": code, "seq": seq})

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return dict(self.__dict__)


def verify(db: Connection) -> AuditReport:
    """Recompute every row's link in seq order: a changed field, a gap or a forged row is named."""
    report = AuditReport()
    prev, expected = canonical.ZERO_HASH, 1
    for row in db.execute(select(audit_log).order_by(audit_log.c.seq), execution_options={"yield_per": 1000}):
        report.rows_checked += 1
        if row.seq != expected:
            report.add("seq_gap", row.seq)
        if _link(prev, row) != bytes(row.hash):
            report.add("hash_mismatch", row.seq)
        prev, expected = bytes(row.hash), row.seq + 1
    return report


def verify_books(db: Connection, *, verifier: ledger.Verifier) -> dict[str, Any]:
    """The ledger's full verification and the audit chain's, as one report (`ok` only if both are)."""
    books = ledger.verify(db, verifier=verifier).as_dict()
    chain = verify(db)
    return {**books, "ok": bool(books["ok"]) and chain.ok, "audit": chain.as_dict()}
