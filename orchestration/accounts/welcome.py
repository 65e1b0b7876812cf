"""The welcome grant's policy: which sign-ups earn the 1000 credits, and how many per client address.

A wallet, an anonymous OIDC account or a throw-away address costs nothing to make, so the grant is
rationed (README "Authentication" states this for operators):

- Only identities vouched for by a provider in WELCOME_GRANT_PROVIDERS earn it: `creditflow` (our own
  JWTs), `siwe` (Sign-In With Ethereum), `oidc` (every issuer in OIDC_ISSUERS) or one issuer's URL.
- At most `Settings.welcome_daily_cap` new accounts per client address per UTC day get it (0: no cap).
  Sign-ups beyond it are created without the grant, never refused.
- The client address is the request's remote address, which ProxyFix rewrites from X-Forwarded-For
  only for TRUSTED_PROXIES hops (so a client cannot pick its own). An IPv6 address counts as its /64,
  the block one subscriber usually gets.
- The count is a database row (`welcome_grants_by_address`) written in the new user's savepoint: a
  racing duplicate of the same first request rolls back with its user row (so one grant, one count),
  and losing Redis loses no count. Concurrent sign-ups from one address queue on that row; the lock
  order is users row, then this row, then the new ledger account. Rows from before yesterday are
  deleted by later sign-ups, so addresses are kept for a day or two only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, Connection, Date, Integer, String, Table, delete
from sqlalchemy.dialects import postgresql, sqlite

from runtime.db import Base
from runtime.settings import Settings

welcome_grants_by_address = Table(
    "welcome_grants_by_address",
    Base.metadata,
    Column("day", Date, primary_key=True),
    Column("client_address", String(64), primary_key=True),
    Column("granted", Integer, nullable=False),
)

Reason = Literal["granted", "provider", "address_cap"]


@dataclass(frozen=True)
class Signup:
    """Who vouched for a new identity, and the client address it signed up from."""

    provider: str
    client_address: str | None


@dataclass(frozen=True)
class WelcomeDecision:
    """Whether a new account got the welcome grant; `reason` says why not."""

    provider: str
    reason: Reason

    @property
    def granted(self) -> bool:
        """True when the grant was made."""
        return self.reason == "granted"


@dataclass(frozen=True)
class WelcomePolicy:
    """The configured providers that earn the grant and the daily cap per client address."""

    providers: frozenset[str]
    oidc_issuers: frozenset[str]
    daily_cap: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WelcomePolicy:
        """The policy WELCOME_GRANT_PROVIDERS and WELCOME_GRANTS_PER_ADDRESS_PER_DAY describe."""
        issuers = frozenset(config.issuer for config in settings.OIDC_ISSUERS)
        return cls(settings.welcome_providers, issuers, settings.welcome_daily_cap)

    def earns(self, provider: str) -> bool:
        """Whether identities from this provider earn the grant at all."""
        return provider in self.providers or ("oidc" in self.providers and provider in self.oidc_issuers)

    def decide(self, session: Connection, signup: Signup, *, now: datetime) -> WelcomeDecision:
        """Decide for a new account inside its savepoint, counting a grant against the address's cap."""
        if not self.earns(signup.provider):
            return WelcomeDecision(signup.provider, "provider")
        address = client_key(signup.client_address)
        if self.daily_cap and not _count_grant(session, address, now, self.daily_cap):
            return WelcomeDecision(signup.provider, "address_cap")
        return WelcomeDecision(signup.provider, "granted")


def client_key(address: str | None) -> str:
    """The counted form of a client address: IPv4 as is, IPv6 as its /64 network."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "unknown")[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _upsert(session: Connection) -> Any:
    dialect = postgresql if session.dialect.name == "postgresql" else sqlite
    return dialect.insert(welcome_grants_by_address)


def _count_grant(session: Connection, key: str, now: datetime, cap: int) -> bool:
    """Add one grant to the address's count for today unless it reached `cap`; True if added."""
    table = welcome_grants_by_address
    day = now.date()
    session.execute(delete(table).where(table.c.day < day - timedelta(days=1)))
    statement = (
        _upsert(session)
        .values(day=day, client_address=key, granted=1)
        .on_conflict_do_update(
            index_elements=[table.c.day, table.c.client_address],
            set_={"granted": table.c.granted + 1},
            where=table.c.granted < cap,
        )
        .returning(table.c.granted)
    )
    return session.execute(statement).first() is not None
