"""The welcome-grant policy: which providers earn it, a cap per client address and day, exactly once."""

from __future__ import annotations

import re
import threading
import uuid

from eth_account import Account
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from ledger.tables import accounts, entries
from orchestration.accounts.users import users
from orchestration.accounts.welcome import welcome_grants_by_address
from orchestration.services import Services
from tests.integration.api.auth.test_siwe import _signed
from tests.integration.api.conftest import AUDIENCE, ISSUER, AppFactory, Jwks, bearer, make_token

RACERS = 10


def _address() -> str:
    """A client address no other test uses (the suite's database is shared)."""
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


def _available(client: FlaskClient, token: str, address: str, headers: dict[str, str] | None = None) -> str:
    environ = {"REMOTE_ADDR": address}
    answer = client.get("/api/v1/me", headers=bearer(token) | (headers or {}), environ_base=environ)
    assert answer.status_code == 200, answer.json  # never refused, with or without the grant
    return str(answer.json["balance"]["available"])


def _siwe_token(client: FlaskClient) -> str:
    answer = client.post("/api/v1/auth/siwe/verify", json=_signed(client, Account.create()))
    assert answer.status_code == 200, answer.json
    return str(answer.json["token"])


def _metric(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _counted(services: Services, address: str) -> int:
    table = welcome_grants_by_address
    with services.uow() as session:
        total = session.execute(select(func.sum(table.c.granted)).where(table.c.client_address == address))
        return int(total.scalar() or 0)


def test_only_configured_providers_earn_the_grant(make_app: AppFactory) -> None:
    client = make_app(WELCOME_GRANT_PROVIDERS="creditflow")[0].test_client()
    address = _address()
    withheld = _metric(client, "creditflow_welcome_grants_withheld_total", provider="siwe", reason="provider")
    granted = _metric(client, "creditflow_welcome_grants_total", provider="creditflow")
    assert _available(client, _siwe_token(client), address) == "0"
    assert _available(client, make_token(), address) == "1000"
    assert _metric(
        client, "creditflow_welcome_grants_withheld_total", provider="siwe", reason="provider"
    ) == withheld + 1
    assert _metric(client, "creditflow_welcome_grants_total", provider="creditflow") == granted + 1
    # The default policy grants SIWE sign-ups too.
    default = make_app()[0].test_client()
    assert _available(default, _siwe_token(default), _address()) == "1000"


def test_oidc_issuers_earn_it_by_kind_or_by_name(make_app: AppFactory, jwks: Jwks) -> None:
    kid = f"welcome-{uuid.uuid4().hex[:8]}"  # a new key id: the issuer's keys are cached per process
    jwks.add(kid)
    issuer = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks.url, "jwks_refresh_cooldown_s": 0}
    for providers, expected in (("oidc", "1000"), (ISSUER, "1000"), ("creditflow,https://other.test", "0")):
        client = make_app(OIDC_ISSUERS=[issuer], WELCOME_GRANT_PROVIDERS=providers)[0].test_client()
        token = jwks.token(kid, sub=f"oidc-{uuid.uuid4().hex[:8]}")
        assert _available(client, token, _address()) == expected, providers


def test_a_client_address_gets_a_few_grants_a_day(make_app: AppFactory, services: Services) -> None:
    client = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=2)[0].test_client()
    address = _address()
    capped = {"provider": "creditflow", "reason": "address_cap"}
    before = _metric(client, "creditflow_welcome_grants_withheld_total", **capped)
    assert [_available(client, make_token(), address) for _ in range(4)] == ["1000", "1000", "0", "0"]
    assert _metric(client, "creditflow_welcome_grants_withheld_total", **capped) == before + 2
    assert _counted(services, address) == 2  # in the database, not in Redis
    assert _available(client, make_token(), _address()) == "1000"  # another address has its own cap
    # An existing user is not a sign-up: signing in again counts nothing.
    token = make_token()
    other = _address()
    assert _available(client, token, other) == "1000"
    assert _available(make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=2)[0].test_client(), token, other) == "1000"
    assert _counted(services, other) == 1


def test_the_address_is_the_one_trusted_proxies_report(make_app: AppFactory) -> None:
    # No trusted proxy: X-Forwarded-For is the client's own claim and changes nothing.
    direct = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=1)[0].test_client()
    address = _address()
    assert _available(direct, make_token(), address) == "1000"
    spoofed = {"X-Forwarded-For": _address()}
    assert _available(direct, make_token(), address, headers=spoofed) == "0"
    # Behind one trusted proxy, the address the proxy saw is the client's.
    proxied = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=1, TRUSTED_PROXIES=1)[0].test_client()
    proxy, client_address = _address(), _address()
    seen = {"X-Forwarded-For": client_address}
    assert _available(proxied, make_token(), proxy, headers=seen) == "1000"
    assert _available(proxied, make_token(), proxy, headers=seen) == "0"
    assert _available(proxied, make_token(), proxy, headers={"X-Forwarded-For": _address()}) == "1000"


def test_ipv6_addresses_count_per_64(make_app: AppFactory, services: Services) -> None:
    client = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=1)[0].test_client()
    high, low = uuid.uuid4().bytes[:2]
    prefix = f"2001:db8:{high:x}:{low:x}"
    assert _available(client, make_token(), f"{prefix}::1") == "1000"
    assert _available(client, make_token(), f"{prefix}:ffff:1:2:3") == "0"  # same /64
    assert _counted(services, f"{prefix}::/64") == 1


def _race(app: Flask, tokens: list[str], address: str) -> list[int]:
    barrier = threading.Barrier(len(tokens))
    statuses: list[int] = []
    lock = threading.Lock()

    def first_request(token: str) -> None:
        client = app.test_client()
        barrier.wait()
        answer = client.get("/api/v1/me", headers=bearer(token), environ_base={"REMOTE_ADDR": address})
        with lock:
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=first_request, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def _grants(services: Services, subs: list[str]) -> int:
    with services.uow() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(entries.join(accounts, accounts.c.id == entries.c.account_id))
                .join(users, users.c.id == accounts.c.user_id)
                .where(users.c.external_id.in_(subs), entries.c.kind == "grant")
            ).scalar()
            or 0
        )


def test_racing_first_requests_are_counted_once(make_app: AppFactory, services: Services) -> None:
    app = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=1)[0]
    sub, address = f"racer-{uuid.uuid4().hex[:10]}", _address()
    assert _race(app, [make_token(sub=sub)] * RACERS, address) == [200] * RACERS
    assert _grants(services, [sub]) == 1
    assert _counted(services, address) == 1  # the losers' counts rolled back with their user rows


def test_racing_sign_ups_from_one_address_stop_at_the_cap(make_app: AppFactory, services: Services) -> None:
    app = make_app(WELCOME_GRANTS_PER_ADDRESS_PER_DAY=3)[0]
    subs, address = [f"crowd-{uuid.uuid4().hex[:10]}" for _ in range(RACERS)], _address()
    assert _race(app, [make_token(sub=sub) for sub in subs], address) == [200] * RACERS
    assert _grants(services, subs) == 3
    assert _counted(services, address) == 3
