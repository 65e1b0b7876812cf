"""Payments on real services: a fresh database, Redis, local Stripe and PayPal servers, a real
`critical,maintenance` worker process (fulfilment runs there), and the Flask app in-process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import ledger
from api.app import create_app
from orchestration.accounts.users import get_or_create_user
from orchestration.bootstrap import bootstrap
from orchestration.payments.tables import orders
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.brokers import PrivateRedis
from tests.support.chain_rpc import Chain, chain_rpc
from tests.support.databases import backends, fresh_database
from tests.support.paypal_server import paypal_server
from tests.support.processes import ROOT, child_env, worker
from tests.support.stripe_server import sign, stripe_server
from tests.support.waiting import wait_for

JWT_SECRET = "payments-suite-jwt-secret-0123456789abcdef"
LEDGER_KEY = "hmac:payments-suite-ledger-key-0123456789"
STRIPE_KEY = "sk_test_creditflow"
STRIPE_WEBHOOK_SECRET = "whsec_payments_suite"
PAYPAL = {
    "PAYPAL_CLIENT_ID": "paypal-client",
    "PAYPAL_CLIENT_SECRET": "paypal-secret",
    "PAYPAL_WEBHOOK_ID": "WH-1",
}
CHAIN_ID = 131277322940537  # eth-tester's
CONFIRMATIONS = 3
PRICE_WEI = 10**16
PRICE_TST = 24_000_000
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
TOKEN = json.loads((ROOT / "tests" / "support" / "contracts" / "test_token.json").read_text())
PACKS = [
    {
        "id": "credits-1000",
        "credits": 1000,
        "stripe": {"amount": 2400, "currency": "USD"},
        "paypal": {"amount": 2400, "currency": "USD"},
        "crypto": {str(CHAIN_ID): PRICE_WEI, f"{CHAIN_ID}:TST": PRICE_TST},
    },
    {"id": "credits-100", "credits": 100, "stripe": {"amount": 300, "currency": "EUR"}},
]
M = ledger.MICRO


@pytest.fixture(scope="session")
def payments_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of its own (PostgreSQL when configured), so `ledger verify` sees only ours."""
    backend = backends()[-1]
    with fresh_database(backend, Path(tmp_path_factory.mktemp("paydb"))) as engine:
        yield engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def stripe_fake() -> Iterator[tuple[str, Any]]:
    """The local Stripe server: (base URL, state)."""
    with stripe_server(STRIPE_KEY) as served:
        yield served


@pytest.fixture(scope="session")
def paypal_fake() -> Iterator[tuple[str, Any]]:
    """The local PayPal server: (base URL, state)."""
    with paypal_server(
        PAYPAL["PAYPAL_CLIENT_ID"], PAYPAL["PAYPAL_CLIENT_SECRET"], PAYPAL["PAYPAL_WEBHOOK_ID"]
    ) as s:
        yield s


class PayChain:
    """The chain the suite pays on, with an allow-listed token and a look-alike that is not."""

    def __init__(self, url: str, chain: Chain) -> None:
        self.url, self.chain, self.w3 = url, chain, chain.w3
        self.payer = chain.tester.get_accounts()[1]
        self.token = self.deploy("Test Token", "TST")
        self.fake = self.deploy("Test Token", "TST")  # same code, not allow-listed

    def deploy(self, name: str, symbol: str) -> Any:
        factory = self.w3.eth.contract(abi=TOKEN["abi"], bytecode=TOKEN["bytecode"])
        tx = factory.constructor(name, symbol, 6).transact({"from": self.payer})
        address = self.w3.eth.get_transaction_receipt(tx)["contractAddress"]
        contract = self.w3.eth.contract(address=address, abi=TOKEN["abi"])
        contract.functions.mint(self.payer, 10**15).transact({"from": self.payer})
        return contract

    def pay(self, to: str, value: int) -> str:
        return self.w3.eth.send_transaction({"from": self.payer, "to": to, "value": value}).to_0x_hex()

    def pay_token(
        self, to: str, value: int, *, token: Any = None, sender: str | None = None, gas: int | None = None
    ) -> str:
        options: dict[str, Any] = {"from": sender or self.payer}
        if gas:
            options["gas"] = gas
        return (
            (token or self.token)
            .functions.transfer(self.w3.to_checksum_address(to), value)
            .transact(options)
            .to_0x_hex()
        )

    def mine(self, blocks: int) -> None:
        self.chain.tester.mine_blocks(blocks)


@pytest.fixture(scope="session")
def test_chain() -> Iterator[PayChain]:
    """An eth-tester chain on HTTP JSON-RPC (the worker reaches it too)."""
    with chain_rpc() as (url, chain):
        yield PayChain(url, chain)


@pytest.fixture(scope="session")
def pay_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis (and broker) of the payments suite's own: its worker lives for the whole session and
    must take no other test's messages, nor leave them any of its own."""
    server = PrivateRedis(Path(tmp_path_factory.mktemp("payredis"))).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def pay_settings(  # noqa: PLR0917 - pytest passes fixtures by position
    payments_database: str,
    pay_redis: str,
    stripe_fake: tuple[str, Any],
    paypal_fake: tuple[str, Any],
    test_chain: PayChain,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """Settings (as environment variables) shared by the test process and the worker."""
    return {
        "DATABASE_URL": payments_database,
        "REDIS_URL": pay_redis,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "LEDGER_SIGNING_KEY": LEDGER_KEY,
        "CREDITFLOW_ENV": "test",
        "PAYMENT_PACKS": json.dumps(PACKS),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_fake[0],
        "PAYPAL_API_BASE": paypal_fake[0],
        **PAYPAL,
        "VAR_DIR": str(tmp_path_factory.mktemp("payvar")),
        "RECONCILE_MIN_AGE_S": "0",
        "RATE_LIMITS_ENABLED": "false",
        "METRICS_ENABLED": "false",
        "CRYPTO_HD_KEY": MNEMONIC,
        "CRYPTO_CHAINS": json.dumps(
            [
                {
                    "chain_id": CHAIN_ID,
                    "rpc_url": test_chain.url,
                    "confirmations": CONFIRMATIONS,
                    "tokens": {"TST": test_chain.token.address},
                }
            ]
        ),
    }


def settings_from(env: dict[str, str], **changes: str) -> Any:
    """Settings from the suite's environment variables (JSON lists decoded as the environment would be)."""
    values: dict[str, Any] = {**env, **changes}
    values["CRYPTO_CHAINS"] = json.loads(values["CRYPTO_CHAINS"])
    return load_settings(**values)


@pytest.fixture(scope="session")
def services(pay_settings: dict[str, str]) -> Iterator[Services]:
    """The test process's services on the suite's database and Redis."""
    built = bootstrap(settings_from(pay_settings))
    yield built
    built.close()


@pytest.fixture(scope="session")
def pay_worker(pay_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real prefork worker on critical and maintenance, as `creditflow dev` runs one."""
    log = tmp_path_factory.mktemp("paylogs") / "critical.log"
    with worker("critical,maintenance", env=child_env(**pay_settings), cwd=ROOT, log=log, name="pay"):
        yield


@pytest.fixture(scope="session")
def app(services: Services) -> Flask:
    """The API on the suite's services."""
    built = create_app(services.settings, services)
    built.testing = True
    return built


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the API."""
    return app.test_client()


def make_token(sub: str, **claims: Any) -> str:
    """A creditflow JWT."""
    import jwt

    now = int(time.time())
    return jwt.encode(
        {"iss": "creditflow", "sub": sub, "iat": now, "exp": now + 900, **claims},
        JWT_SECRET,
        algorithm="HS256",
    )


@pytest.fixture
def user(services: Services) -> tuple[str, dict[str, str]]:
    """A new user (with the welcome grant): (user id, Authorization headers)."""
    sub = f"payer-{uuid.uuid4().hex[:10]}"
    with services.uow() as connection:
        found = get_or_create_user(connection, external_id=sub)
    return found.id, {"Authorization": f"Bearer {make_token(sub)}"}


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of an admin."""
    return {"Authorization": f"Bearer {make_token(f'admin-{uuid.uuid4().hex[:8]}', roles=['admin'])}"}


def deliver_stripe(
    client: FlaskClient,
    event: dict[str, Any],
    *,
    secret: str = STRIPE_WEBHOOK_SECRET,
    timestamp: int | None = None,
    header: str | None = None,
) -> Any:
    """POST a Stripe event to our webhook, signed as Stripe signs it (or with the header given)."""
    payload = json.dumps(event)
    signature = sign(payload, secret, timestamp) if header is None else header
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["Stripe-Signature"] = signature
    return client.post("/api/v1/payments/stripe/webhook", data=payload, headers=headers)


def order_row(services: Services, order_id: str) -> Any:
    """An order as it is now."""
    with services.engine.connect() as connection:
        return connection.execute(select(orders).where(orders.c.id == order_id)).one()


def wait_status(services: Services, order_id: str, *statuses: str, timeout: float = 30) -> Any:
    """Wait until the order reaches one of `statuses`; return it."""
    return wait_for(
        lambda: (row := order_row(services, order_id)).status in statuses and row,
        timeout=timeout,
        what=f"order {order_id} in {statuses}",
    )


def posted(services: Services, user_id: str) -> int:
    """The user's posted balance, micro-credits."""
    with services.engine.connect() as connection:
        return ledger.balance(connection, user_id=user_id).posted


def held(services: Services, user_id: str) -> int:
    """The user's held credits (job holds, dispute and fraud-warning freezes), micro-credits."""
    with services.engine.connect() as connection:
        return ledger.balance(connection, user_id=user_id).held


def debt(services: Services, user_id: str) -> int:
    """The user's debt, micro-credits."""
    with services.engine.connect() as connection:
        return ledger.account(connection, user_id=user_id).debt


def ledger_clean(services: Services) -> None:
    """Seal what is pending, then `ledger verify` the whole database: it must be clean."""
    signer = ledger.signer_from_key(LEDGER_KEY)
    with services.uow() as connection:
        while ledger.seal(connection, signer=signer):
            pass
    with services.uow(snapshot=True) as connection:
        report = ledger.verify(connection, verifier=signer.verifier)
    assert report.ok, report.problems


def purchases(services: Services, order_id: str) -> list[tuple[str, int]]:
    """(kind, amount) of the ledger entries booked for an order, in order."""
    from ledger.tables import entries

    with services.engine.connect() as connection:
        return [
            (row.kind, row.amount)
            for row in connection.execute(
                select(entries.c.kind, entries.c.amount)
                .where(entries.c.reference == f"order:{order_id}")
                .order_by(entries.c.id)
            )
        ]
