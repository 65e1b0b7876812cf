"""What an operator looks up and changes: users, a user's money and jobs, adjustments with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, func, or_, select

import ledger
from orchestration.accounts.users import get_user, users
from orchestration.reports import audit
from orchestration.services import Services
from orchestration.tables import jobs

MAX_USERS = 200


class UserNotFound(LookupError):
    """No user has this id."""


def find_users(services: Services, *, query: str, limit: int) -> list[dict[str, Any]]:
    """Users whose id, external id or email contains `query` (case-insensitive), newest first."""
    needle = query.lower()  # `%` and `_` match themselves (autoescape), not anything
    statement = (
        select(users.c.id, users.c.external_id, users.c.email, users.c.created_at)
        .where(
            or_(
                func.lower(users.c.id).contains(needle, autoescape=True),
                func.lower(users.c.external_id).contains(needle, autoescape=True),
                func.lower(users.c.email).contains(needle, autoescape=True),
            )
        )
        .order_by(users.c.created_at.desc(), users.c.id.desc())
        .limit(min(limit, MAX_USERS))
    )
    with services.uow(autocommit=True) as db:
        return [dict(row._mapping) for row in db.execute(statement)]


def balance_view(db: Connection, user_id: str) -> dict[str, int]:
    """The user's posted, held and available micro-credits."""
    found = ledger.balance(db, user_id=user_id)
    return {"posted": found.posted, "held": found.held, "available": found.available}


def user_overview(services: Services, *, user_id: str, limit: int = 20) -> dict[str, Any]:
    """A user with their balance, their newest jobs and ledger entries (one snapshot)."""
    with services.uow(snapshot=True) as db:
        user = get_user(db, user_id=user_id)
        if user is None:
            raise UserNotFound(user_id)
        recent = db.execute(
            select(jobs)
            .where(jobs.c.user_id == user_id)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(limit)
        ).all()
        return {
            "id": user.id,
            "external_id": user.external_id,
            "email": user.email,
            "created_at": user.created_at,
            "balance": balance_view(db, user_id),
            "jobs": recent,
            "entries": ledger.transactions(db, user_id=user_id, limit=limit)["items"],
        }


def list_jobs(
    services: Services,
    *,
    limit: int,
    status: str | None = None,
    kind: str | None = None,
    user_id: str | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[Any]:
    """Every user's jobs newest first, by status, kind or user, after a (created_at, id) cursor."""
    query = select(jobs)
    for column, value in ((jobs.c.status, status), (jobs.c.kind, kind), (jobs.c.user_id, user_id)):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        created, job_id = before
        query = query.where(
            (jobs.c.created_at < created) | ((jobs.c.created_at == created) & (jobs.c.id < job_id))
        )
    with services.uow(autocommit=True) as db:
        return list(db.execute(query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Book:
    """Command: credit a user `amount` micro-credits for a reason, once per key: an `adjustment` (signed,
    posted credits) or a `grant` (positive, a promotional lot, optionally expiring)."""

    kind: Literal["adjustment", "grant"]
    user_id: str
    amount: int
    reason: str
    idempotency_key: str
    expires_at: datetime | None = None


def _post(db: Connection, command: Book) -> ledger.Receipt:
    if command.kind == "grant":
        return ledger.grant(
            db,
            user_id=command.user_id,
            amount=command.amount,
            reason=command.reason,
            expires_at=command.expires_at,
            idempotency_key=command.idempotency_key,
        )
    return ledger.adjust(
        db,
        user_id=command.user_id,
        amount=command.amount,
        reason=command.reason,
        idempotency_key=command.idempotency_key,
    )


def book(services: Services, command: Book, *, actor: audit.Actor) -> dict[str, Any]:
    """Book through the ledger and audit it in the same money transaction (a replay moved nothing: it
    was audited the first time). Answers the receipt's ids and the balance after."""
    with services.uow(account_of=command.user_id) as db:
        if get_user(db, user_id=command.user_id) is None:
            raise UserNotFound(command.user_id)
        before = balance_view(db, command.user_id)
        receipt = _post(db, command)
        after = balance_view(db, command.user_id)
        if before != after:
            audit.record(
                db,
                actor=actor,
                action=f"{command.kind}.create",
                target=f"user:{command.user_id}",
                before={"balance": before},
                reason=command.reason,
                after={
                    "balance": after,
                    "entry_ids": list(receipt.entry_ids),
                    "amount": command.amount,
                    "expires_at": command.expires_at,
                },
            )
    return {"entry_id": receipt.entry_ids[0], "lot_id": receipt.lot_id, "balance": after}
