"""Auto top-up: a saved card charged off-session (at the local Stripe server) when the balance falls below
the threshold, at most N a month; SCA turns it off with a notification, so do three failures in a row."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

import ledger
from orchestration.jobs.progress import user_stream
from orchestration.payments import auto_top_up, reconciler
from orchestration.payments.tables import auto_top_ups, orders
from orchestration.services import Services
from tests.integration.payments.conftest import M, deliver_stripe, ledger_clean, posted, wait_for, wait_status
from tests.integration.payments.factories import assert_problem, checkout, for_a_while, pay_checkout
from tests.support.stripe_server import CARD_DECLINED, CARD_SCA

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]
SETTINGS = {"enabled": True, "threshold": "500", "pack_id": "credits-1000", "max_per_month": 2}


def save_card(client: FlaskClient, services: Services, stripe_fake: Any, headers: dict[str, str]) -> None:
    """Buy a pack through Checkout with `save_card`: the card is kept for refills."""
    pay_checkout(client, services, stripe_fake[1], checkout(client, headers, save_card=True))
    wait_for(
        lambda: client.get("/api/v1/me/auto-top-up", headers=headers).json["has_payment_method"],
        what="card saved",
    )


def spend(services: Services, user_id: str, credits: int) -> None:
    key = f"spend:{user_id}:{credits}:{posted(services, user_id)}"  # read before the write transaction
    with services.uow(account_of=user_id) as connection:
        ledger.adjust(connection, user_id=user_id, amount=-credits * M, reason="spent", idempotency_key=key)


def refills(services: Services, user_id: str) -> list[str]:
    with services.engine.connect() as connection:
        return list(
            connection.execute(
                select(orders.c.status)
                .where(orders.c.user_id == user_id, orders.c.purpose == "auto_top_up")
                .order_by(orders.c.created_at)
            ).scalars()
        )


def _refill_order(services: Services, user_id: str) -> str:
    """The id of the user's one refill order."""
    with services.engine.connect() as connection:
        return str(
            connection.execute(
                select(orders.c.id).where(orders.c.user_id == user_id, orders.c.purpose == "auto_top_up")
            ).scalar_one()
        )


def notices(services: Services, user_id: str, kind: str) -> list[dict[str, Any]]:
    entries = services.redis.xrange(user_stream(user_id))
    return [event for _id, fields in entries if (event := json.loads(fields["data"]))["type"] == kind]


def test_a_refill_below_the_threshold_at_most_n_a_month(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    refused = client.patch("/api/v1/me/auto-top-up", json=SETTINGS, headers=headers)
    assert refused.status_code == 409  # no saved card yet
    save_card(client, services, stripe_fake, headers)
    answer = client.patch("/api/v1/me/auto-top-up", json=SETTINGS, headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["has_payment_method"] is True
    assert auto_top_up.sweep(services) == 0 or posted(services, user_id) >= 500 * M  # 2000: not due
    assert auto_top_up.charge(services, user_id) == "not due"
    for month_refill in (1, 2):
        spend(services, user_id, posted(services, user_id) // M - 400)  # down to 400 < 500
        before = posted(services, user_id)
        auto_top_up.sweep(services)
        wait_for(
            lambda n=month_refill: refills(services, user_id).count("credited") == n, what="refill credited"
        )
        assert posted(services, user_id) == before + 1000 * M  # a refill only adds
    spend(services, user_id, 1000)
    assert auto_top_up.charge(services, user_id) == "not due"  # two this month already
    assert refills(services, user_id) == ["credited", "credited"]
    assert any(event["type"] == "balance" for event in notices(services, user_id, "balance"))
    ledger_clean(services)


def due_for_refill(client: FlaskClient, services: Services, stripe_fake: Any, user: Any) -> tuple[str, int]:
    """A user with a saved card and auto top-up on, below the threshold: (user id, posted balance)."""
    user_id, headers = user
    save_card(client, services, stripe_fake, headers)
    client.patch("/api/v1/me/auto-top-up", json=SETTINGS, headers=headers)
    spend(services, user_id, 1600)
    return user_id, posted(services, user_id)


def charge_with_answers_lost(services: Services, state: Any, user_id: str) -> None:
    """Stripe charges the card; its answer, and the SDK's two retries', never arrive."""
    with for_a_while(state, lose_answers=3):
        assert auto_top_up.charge(services, user_id) == "unconfirmed"


def _with_card(services: Services, user_id: str, card: str) -> None:
    with services.uow() as connection:
        connection.execute(
            update(auto_top_ups).where(auto_top_ups.c.user_id == user_id).values(payment_method_ref=card)
        )


def test_sca_turns_auto_top_up_off_with_a_notification(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    save_card(client, services, stripe_fake, headers)
    client.patch("/api/v1/me/auto-top-up", json=SETTINGS, headers=headers)
    _with_card(services, user_id, CARD_SCA)
    spend(services, user_id, 1600)
    before = posted(services, user_id)
    assert auto_top_up.charge(services, user_id) == "disabled"
    state = client.get("/api/v1/me/auto-top-up", headers=headers).json
    assert state["enabled"] is False
    assert "authentication" in state["disabled_reason"]
    assert notices(services, user_id, "auto_top_up_disabled")
    assert auto_top_up.charge(services, user_id) == "not due"
    assert posted(services, user_id) == before
    assert refills(services, user_id) == ["failed"]


def test_three_failures_in_a_row_turn_it_off(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    save_card(client, services, stripe_fake, headers)
    client.patch("/api/v1/me/auto-top-up", json={**SETTINGS, "max_per_month": 10}, headers=headers)
    _with_card(services, user_id, CARD_DECLINED)
    spend(services, user_id, 1600)
    assert [auto_top_up.charge(services, user_id) for _ in range(3)] == ["failed", "failed", "disabled"]
    state = client.get("/api/v1/me/auto-top-up", headers=headers).json
    assert (state["enabled"], state["failures"]) == (False, 3)
    assert notices(services, user_id, "auto_top_up_disabled")
    assert refills(services, user_id) == ["failed", "failed", "failed"]


def test_a_charge_whose_answer_was_lost_waits_for_stripe_and_is_credited_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, before = due_for_refill(client, services, stripe_fake, user)
    state = stripe_fake[1]
    charge_with_answers_lost(services, state, user_id)
    # The card may have been charged: no second refill while Stripe has not said how this one went.
    assert auto_top_up.charge(services, user_id) == "not due"
    assert refills(services, user_id) == ["pending"]
    order_id = _refill_order(services, user_id)
    intent = next(i for i in state.intents.values() if i["metadata"].get("order_id") == order_id)
    assert intent["status"] == "succeeded"
    deliver_stripe(client, state.event("payment_intent.succeeded", intent))
    wait_status(services, order_id, "credited")
    assert posted(services, user_id) == before + 1000 * M
    ledger_clean(services)


def _charges_sent(state: Any, order_id: str) -> int:
    """POSTs of an off-session charge for the order that reached Stripe (the SDK's retries included)."""
    return sum(
        1
        for method, path, body in state.requests
        if method == "POST" and path == "/v1/payment_intents" and body["metadata"]["order_id"] == order_id
    )


def _intents_of(state: Any, order_id: str) -> list[dict[str, Any]]:
    return [i for i in state.intents.values() if i["metadata"].get("order_id") == order_id]


@pytest.mark.parametrize("hours_later", [0, 30])
def test_a_refill_whose_answer_was_lost_is_found_without_a_webhook_and_charged_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, hours_later: int
) -> None:
    from datetime import UTC, datetime, timedelta

    user_id, before = due_for_refill(client, services, stripe_fake, user)
    state = stripe_fake[1]
    charge_with_answers_lost(services, state, user_id)  # and no webhook ever comes
    order_id = _refill_order(services, user_id)
    sent = _charges_sent(state, order_id)
    # The reconciler finds the charge (a replay of the same idempotency key, or after Stripe's 24 h of
    # replays, a search by the order id in its metadata) instead of expiring the refill.
    reconciler.sweep(services, now=datetime.now(UTC) + timedelta(hours=hours_later))
    wait_status(services, order_id, "credited")
    assert posted(services, user_id) == before + 1000 * M
    assert len(_intents_of(state, order_id)) == 1
    if hours_later:
        assert _charges_sent(state, order_id) == sent  # past the replay window: searched, never re-sent
    auto_top_up.sweep(services)
    reconciler.sweep(services)
    assert auto_top_up.charge(services, user_id) == "not due"
    assert refills(services, user_id) == ["credited"]
    ledger_clean(services)


@pytest.mark.parametrize("search_offered", [True, False])
def test_a_refill_that_never_reached_stripe_is_sent_again_with_its_key_and_charged_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, search_offered: bool
) -> None:
    user_id, before = due_for_refill(client, services, stripe_fake, user)
    state = stripe_fake[1]
    state.fail_next = [500, 500, 500]  # the charge and the SDK's two retries fail before Stripe acts
    assert auto_top_up.charge(services, user_id) == "unconfirmed"
    order_id = _refill_order(services, user_id)
    assert _intents_of(state, order_id) == []
    with for_a_while(state, search_offered=search_offered):
        reconciler.sweep(services)
    wait_status(services, order_id, "credited")
    reconciler.sweep(services)  # asking again charges nothing more
    assert len(_intents_of(state, order_id)) == 1
    assert posted(services, user_id) == before + 1000 * M
    ledger_clean(services)


def test_a_threshold_a_refill_cannot_lift_the_balance_above_is_refused(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    _user_id, headers = user
    save_card(client, services, stripe_fake, headers)
    before = client.get("/api/v1/me/auto-top-up", headers=headers).json
    for threshold in ("1000", "1500"):  # the pack credits 1000: the balance would stay at or below it
        refused = client.patch(
            "/api/v1/me/auto-top-up", json={**SETTINGS, "threshold": threshold}, headers=headers
        )
        assert_problem(refused, 422, "threshold-above-pack")
    for cap in ("2399", 0, "12.50", "-2400", True):  # below one refill, or not whole minor units
        refused = client.patch(
            "/api/v1/me/auto-top-up", json={**SETTINGS, "max_amount_per_month": cap}, headers=headers
        )
        assert refused.status_code == 422, (cap, refused.json)
        assert refused.content_type == "application/problem+json"
    assert client.get("/api/v1/me/auto-top-up", headers=headers).json == before
    default = client.patch("/api/v1/me/auto-top-up", json=SETTINGS, headers=headers).json
    assert (default["max_amount_per_month"], default["currency"]) == ("4800", "USD")  # price x count


def test_the_money_cap_stops_refills_and_each_refill_is_notified(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    save_card(client, services, stripe_fake, headers)
    capped = {**SETTINGS, "max_per_month": 10, "max_amount_per_month": 2400}  # one pack's price a month
    answer = client.patch("/api/v1/me/auto-top-up", json=capped, headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["max_amount_per_month"] == "2400"
    spend(services, user_id, 1600)
    assert auto_top_up.charge(services, user_id) == "charged"
    order_id = wait_for(
        lambda: refills(services, user_id) == ["credited"] and _refill_order(services, user_id), what="refill"
    )
    refilled = wait_for(lambda: notices(services, user_id, "auto_top_up"), what="refill notified")
    assert [(e["order_id"], e["credits"], e["amount"], e["currency"]) for e in refilled] == [
        (order_id, "1000", "2400", "USD")
    ]
    spend(services, user_id, 1000)  # below the threshold again: the count allows it, the money cap not
    assert auto_top_up.charge(services, user_id) == "not due"
    assert refills(services, user_id) == ["credited"]
    ledger_clean(services)


def test_a_card_is_kept_only_from_a_save_card_checkout_paid_as_the_users_own_customer(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    someone = state.create_customer({"metadata": {"user_id": "someone-else"}})[1]["id"]
    for keep in (False, True):  # a plain Checkout, and one whose session a stranger's customer paid
        started = checkout(client, headers, save_card=keep)
        state.sessions[started["id"]]["customer"] = someone
        pay_checkout(client, services, state, started)
    time.sleep(1)  # the card would be kept just after the credit
    assert client.get("/api/v1/me/auto-top-up", headers=headers).json["has_payment_method"] is False
    save_card(client, services, stripe_fake, headers)  # the user's own save_card Checkout keeps it
    save_card(client, services, stripe_fake, headers)
    mine = [c for c in state.customers.values() if c["metadata"].get("user_id") == user_id]
    assert len(mine) == 1  # one Stripe customer per user, created by us and naming them
    with services.engine.connect() as connection:
        kept = connection.execute(select(auto_top_ups).where(auto_top_ups.c.user_id == user_id)).one()
    assert kept.customer_ref == mine[0]["id"]
