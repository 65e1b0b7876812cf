"""What the payments tests build again and again: an order on a rail brought to a state, a problem answer
checked, the suite's services with other settings, a fake provider's knob turned for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update

from api.app import create_app
from orchestration.bootstrap import bootstrap
from orchestration.payments.crypto import intents
from orchestration.payments.tables import crypto_transfers, orders
from orchestration.services import Services
from tests.integration.payments.conftest import (
    CHAIN_ID,
    M,
    deliver_stripe,
    ledger_clean,
    posted,
    purchases,
    settings_from,
    wait_status,
)

WELCOME = 1000 * M  # what every new user has before paying


def assert_problem(answer: Any, status: int, kind: str) -> None:
    """The answer is an application/problem+json of `status` whose type ends with `kind`."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.content_type == "application/problem+json"
    assert answer.json["type"].endswith(kind)


def credited_once(services: Services, user_id: str, order_id: str) -> None:
    """The order's pack was credited to a new user once, and the whole ledger verifies."""
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert purchases(services, order_id) == [("purchase", 1000 * M)]
    ledger_clean(services)


@contextmanager
def services_with(pay_settings: dict[str, str], **changes: str) -> Iterator[Services]:
    """The suite's services with some settings changed (as environment variables), closed after."""
    built = bootstrap(settings_from(pay_settings, **changes))
    try:
        yield built
    finally:
        built.close()


def client_of(services: Services) -> FlaskClient:
    """A test client of an API on these services."""
    return create_app(services.settings, services).test_client()


@contextmanager
def for_a_while(state: Any, **knobs: Any) -> Iterator[None]:
    """Turn a local provider's knobs (`capture_status`, `lose_answers`, ...) for the block, then back."""
    before = {name: getattr(state, name) for name in knobs}
    for name, value in knobs.items():
        setattr(state, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(state, name, value)


def checkout(
    client: FlaskClient, headers: dict[str, str], pack_id: str = "credits-1000", **body: Any
) -> dict[str, Any]:
    """Start a Stripe Checkout for the pack: our answer {id, url, order_id}."""
    answer = client.post(
        "/api/v1/payments/stripe/checkout-sessions", json={"pack_id": pack_id, **body}, headers=headers
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return dict(answer.json)


def pay_checkout(client: FlaskClient, services: Services, state: Any, started: dict[str, Any]) -> Any:
    """Pay a started Checkout at Stripe and deliver its completion; the paid session, once credited."""
    paid = state.pay_session(started["id"])
    deliver_stripe(client, state.event("checkout.session.completed", paid))
    wait_status(services, started["order_id"], "credited")
    return paid


def credited_checkout(
    client: FlaskClient, services: Services, state: Any, headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Checkout paid at Stripe and credited here: (our answer, the paid session)."""
    started = checkout(client, headers)
    return started, pay_checkout(client, services, state, started)


def intent(client: FlaskClient, headers: dict[str, str], token: str | None = None) -> dict[str, Any]:
    """A crypto payment intent for the 1000-credit pack on the suite's chain (in `token`, or native)."""
    body: dict[str, Any] = {"pack_id": "credits-1000", "chain_id": CHAIN_ID}
    if token:
        body["token"] = token
    answer = client.post("/api/v1/payments/crypto/intents", json=body, headers=headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return dict(answer.json)


def verify(services: Services, order_id: str, tx_hash: str) -> str:
    """What the worker's verify task does, run here so the test knows when it is done."""
    return intents.verify_submitted(services, order_id=order_id, tx_hash=tx_hash)


def transfers(services: Services, order_id: str, what: str = "amount") -> list[tuple[str, Any]]:
    """(status, `what`: amount or review) of the crypto transfers recorded for an order, in order."""
    with services.engine.connect() as connection:
        return [
            (row.status, getattr(row, what))
            for row in connection.execute(
                select(crypto_transfers)
                .where(crypto_transfers.c.order_id == order_id)
                .order_by(crypto_transfers.c.id)
            )
        ]


def expire_at(services: Services, order_id: str, when: datetime) -> None:
    """Move an order's expiry (as if it had been made that long ago)."""
    with services.uow() as connection:
        connection.execute(update(orders).where(orders.c.id == order_id).values(expires_at=when))
