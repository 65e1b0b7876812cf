"""The reconciler on real services: it pages through every open order, so orders that can never be
resolved (the provider refuses their look-up for good) don't hide newer ones, and parks those after
MAX_LOOKUP_FAILURES passes, with a gauge an alert can watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from api.metrics import render_metrics
from orchestration.payments import reconciler
from orchestration.payments.orders import new_order_id
from orchestration.payments.tables import orders
from orchestration.services import Services
from tests.integration.payments.conftest import M, ledger_clean, posted, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]


def _broken_orders(services: Services, user_id: str, rail: str, count: int) -> list[str]:
    """Open orders older than anything else whose provider ids the provider has never heard of."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": new_order_id(),
            "user_id": user_id,
            "pack_id": "credits-1000",
            "rail": rail,
            "credits": 1000 * M,
            "amount": "2400",
            "currency": "USD",
            "status": "pending",
            "provider_ref": f"{'cs_test' if rail == 'stripe' else 'PP'}_unknown_{n}_{user_id}",
            "expires_at": now + timedelta(days=1),
            "created_at": now - timedelta(days=1, seconds=n),
            "updated_at": now,
        }
        for n in range(count)
    ]
    with services.uow() as connection:
        connection.execute(orders.insert(), rows)
    return [row["id"] for row in rows]


def _statuses(services: Services, ids: list[str]) -> set[tuple[str, str | None]]:
    with services.engine.connect() as connection:
        found = connection.execute(select(orders.c.status, orders.c.failure).where(orders.c.id.in_(ids)))
        return {(row.status, (row.failure or "").split(":")[0] or None) for row in found}


def test_orders_that_fail_for_good_neither_starve_newer_ones_nor_are_asked_forever(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    broken = _broken_orders(services, user_id, "stripe", reconciler.BATCH + 1)
    broken += _broken_orders(services, user_id, "paypal", 3)
    started = client.post(
        "/api/v1/payments/stripe/checkout-sessions", json={"pack_id": "credits-1000"}, headers=headers
    ).json
    stripe_fake[1].pay_session(started["id"])  # paid; its webhook is lost
    before = posted(services, user_id)
    first = reconciler.sweep(services)
    assert first.outcomes.get("error", 0) >= len(broken)
    wait_status(services, started["order_id"], "credited")  # found behind a full page of broken orders
    assert posted(services, user_id) == before + 1000 * M
    assert _statuses(services, broken) == {("pending", None)}  # a refused look-up is not an answer yet
    for _ in range(reconciler.MAX_LOOKUP_FAILURES - 1):
        last = reconciler.sweep(services)
    assert last.parked >= len(broken)
    assert _statuses(services, broken) == {("expired", "parked")}
    asked = len(stripe_fake[1].requests)
    reconciler.sweep(services)  # parked: no longer asked about
    assert not any(
        path.rsplit("/", 1)[-1].endswith(user_id) for _m, path, _b in stripe_fake[1].requests[asked:]
    )
    unresolved = reconciler.unresolved(services)
    assert unresolved["stripe"] >= reconciler.BATCH + 1
    assert unresolved["paypal"] >= 3
    text = render_metrics(services)[0].decode()
    assert 'creditflow_payment_orders_unresolved{rail="stripe"}' in text
    assert "creditflow_payment_events_stuck" in text
    ledger_clean(services)
