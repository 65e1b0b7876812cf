"""Users: created on their first valid token, together with their ledger account, exactly once."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Column, DateTime, String, Table, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from orchestration.accounts import spending
from orchestration.accounts.welcome import Signup, WelcomeDecision, WelcomePolicy
from orchestration.notify import thresholds
from runtime.db import Base

if TYPE_CHECKING:
    from orchestration.services import Services

users = Table(
    "users",
    Base.metadata,
    Column("id", String(40), primary_key=True),
    Column("external_id", String(300), nullable=False, unique=True),
    Column("email", String(320)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("preferences", JSON, nullable=False),
)

COST_MODES = ("cheapest", "balanced", "best")
DEFAULT_PREFERENCES: dict[str, Any] = {
    "default_chat_model": None,
    "cost_mode": "balanced",
    "low_balance_threshold": None,  # micro-credits, a list of them (several thresholds), or None
    "spending_limit": None,  # micro-credits of jobs per period, or None (orchestration/accounts/spending.py)
    "spending_limit_period": "day",
}


@dataclass(frozen=True)
class User:
    """A person (or wallet) known to creditflow; `id` is opaque, `external_id` comes from the token."""

    id: str
    external_id: str
    email: str | None
    created_at: datetime
    preferences: dict[str, Any] = field(default_factory=dict)


def _user(row: Row[Any]) -> User:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    preferences = {**DEFAULT_PREFERENCES, **(row.preferences or {})}
    return User(row.id, row.external_id, row.email, created, preferences)


def new_user_id() -> str:
    """A fresh opaque user id."""
    return "usr_" + secrets.token_hex(10)


def find_user(session: Connection, *, external_id: str) -> User | None:
    """The user with this external id, if any."""
    row = session.execute(select(users).where(users.c.external_id == external_id)).first()
    return _user(row) if row else None


def get_user(session: Connection, *, user_id: str) -> User | None:
    """The user with this id, if any."""
    row = session.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


@dataclass(frozen=True)
class SignIn:
    """The signed-in user, and the welcome decision when this sign-in created them."""

    user: User
    welcome: WelcomeDecision | None = None


def get_or_create_user(session: Connection, *, external_id: str, email: str | None = None) -> User:
    """The user for `external_id`, created with the welcome grant on first sight (no sign-up policy)."""
    return sign_up(session, external_id=external_id, email=email).user


def sign_up(
    session: Connection,
    *,
    external_id: str,
    email: str | None = None,
    signup: Signup | None = None,
    policy: WelcomePolicy | None = None,
) -> SignIn:
    """The user for `external_id`, created with its ledger account on first sight, exactly once.

    With a `policy`, a new user gets the welcome grant only if the policy says so for `signup`
    (orchestration/accounts/welcome.py); without one, always. Racing first requests all insert; the unique
    external id lets one win, the others roll their savepoint back (and with it their count against
    the address's cap) and read the winner's row, so the grant is decided and made exactly once.
    """
    existing = find_user(session, external_id=external_id)
    if existing is not None:
        return SignIn(existing)
    from ledger import ensure_user_account

    now = datetime.now(UTC)
    user = User(new_user_id(), external_id, email, now, dict(DEFAULT_PREFERENCES))
    decision: WelcomeDecision | None = None
    try:
        with session.begin_nested():
            session.execute(
                insert(users).values(
                    id=user.id, external_id=external_id, email=email, created_at=user.created_at,
                    preferences={},
                )
            )
            if policy is not None and signup is not None:
                decision = policy.decide(session, signup, now=now)
            ensure_user_account(
                session, user_id=user.id, now=now, welcome_grant=decision is None or decision.granted
            )
    except IntegrityError:
        winner = find_user(session, external_id=external_id)
        if winner is None:
            raise
        return SignIn(winner)
    return SignIn(user, decision)


def sign_in(services: Services, *, external_id: str, email: str | None, signup: Signup) -> SignIn:
    """The user of a verified identity in its own transaction, created under the welcome policy."""
    policy = WelcomePolicy.from_settings(services.settings)
    with services.uow() as db:
        return sign_up(db, external_id=external_id, email=email, signup=signup, policy=policy)


def update_preferences(session: Connection, *, user_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `changes` into the user's preferences; return the full preferences."""
    unknown = set(changes) - set(DEFAULT_PREFERENCES)
    if unknown:
        raise ValueError(f"unknown preferences: {', '.join(sorted(unknown))}")
    if "cost_mode" in changes and changes["cost_mode"] not in COST_MODES:
        raise ValueError(f"cost_mode must be one of {', '.join(COST_MODES)}")
    row = session.execute(select(users.c.preferences).where(users.c.id == user_id)).first()
    if row is None:
        raise LookupError(user_id)
    stored = {**(row.preferences or {}), **changes}
    session.execute(update(users).where(users.c.id == user_id).values(preferences=stored))
    if {"spending_limit", "spending_limit_period"} & set(changes):
        # The enforced copy, in the same unit: the account lock reads it beside the balance.
        merged = {**DEFAULT_PREFERENCES, **stored}
        spending.set_limit(
            session, user_id=user_id, credits=merged["spending_limit"],
            period=merged["spending_limit_period"], now=datetime.now(UTC),
        )
    if "low_balance_threshold" in changes:
        # The caller's unit holds the user's account lock (set_preferences): no money moves meanwhile.
        thresholds.choose(session, user_id=user_id, preference=stored["low_balance_threshold"])
    return {**DEFAULT_PREFERENCES, **stored}


def set_preferences(services: Services, *, user_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change some preferences in a money unit (thresholds are judged against the balance they lock)."""
    with services.uow(account_of=user_id) as session:
        return update_preferences(session, user_id=user_id, changes=changes)
