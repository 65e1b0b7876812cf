"""Stripe top-ups end to end on real services: the `stripe` library against a local Stripe server, webhooks
signed as Stripe signs them, fulfilment in a real worker process on `critical`."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import ledger
from orchestration.payments import reconciler
from orchestration.payments.tables import events, orders
from orchestration.services import Services
from tests.integration.payments.conftest import (
    M,
    debt,
    deliver_stripe,
    held,
    ledger_clean,
    order_row,
    posted,
    purchases,
    wait_for,
    wait_status,
)
from tests.integration.payments.factories import (
    WELCOME,
    assert_problem,
    checkout,
    client_of,
    credited_checkout,
    credited_once,
    for_a_while,
    pay_checkout,
    services_with,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]


def event_count(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def test_ten_parallel_deliveries_of_one_event_credit_once(
    app: Flask, client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    assert started["url"].startswith("https://checkout.stripe.test/")
    order = order_row(services, started["order_id"])
    assert (order.status, order.provider_ref, order.amount, order.currency) == (
        "pending",
        started["id"],
        "2400",
        "USD",
    )
    event = stripe_fake[1].event("checkout.session.completed", stripe_fake[1].pay_session(started["id"]))
    barrier, statuses = threading.Barrier(10), []

    def deliver() -> None:
        own = app.test_client()
        barrier.wait()
        statuses.append(deliver_stripe(own, event).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 10
    wait_status(services, started["order_id"], "credited")
    time.sleep(0.5)  # let any duplicate processing finish: it must change nothing
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert purchases(services, started["order_id"]) == [("purchase", 1000 * M)]
    listed = client.get("/api/v1/payments", headers=headers).json["items"]
    assert [(o["id"], o["status"], o["credited"]) for o in listed] == [
        (started["order_id"], "credited", "1000")
    ]
    ledger_clean(services)


def test_two_events_for_one_payment_credit_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    state = stripe_fake[1]
    pending = state.pay_session(started["id"], asynchronous=True)
    assert deliver_stripe(client, state.event("checkout.session.completed", pending)).status_code == 200
    settled = state.settle_async(started["id"])
    # Fulfilled on async_payment_succeeded; the session's completion snapshot (now paid) comes again
    # late, and so does the PaymentIntent's own success: one payment, one credit.
    for kind, obj in (
        ("checkout.session.async_payment_succeeded", settled),
        ("checkout.session.completed", settled),
        ("payment_intent.succeeded", state.intents[settled["payment_intent"]]),
    ):
        assert deliver_stripe(client, state.event(kind, obj)).status_code == 200
    wait_status(services, started["order_id"], "credited")
    time.sleep(0.5)
    credited_once(services, user_id, started["order_id"])


@pytest.mark.parametrize("how", ["wrong secret", "too old", "missing", "garbage"])
def test_bad_old_or_missing_signature_is_400_and_credits_nothing(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, how: str
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    event = stripe_fake[1].event("checkout.session.completed", stripe_fake[1].pay_session(started["id"]))
    before = event_count(services)
    options: dict[str, Any] = {
        "wrong secret": {"secret": "whsec_not_ours"},
        "too old": {"timestamp": int(time.time()) - 3600},
        "missing": {"header": ""},
        "garbage": {"header": "t=abc,v1=zz"},
    }[how]
    assert_problem(deliver_stripe(client, event, **options), 400, "/invalid-signature")
    time.sleep(0.3)
    assert event_count(services) == before
    assert order_row(services, started["order_id"]).status == "pending"
    assert posted(services, user_id) == WELCOME


def test_an_empty_webhook_secret_disables_the_rail(
    pay_settings: dict[str, str], stripe_fake: Any, user: Any, services: Services
) -> None:
    with services_with(pay_settings, STRIPE_WEBHOOK_SECRET=" ") as off:
        client = client_of(off)
        _user_id, headers = user
        refused = client.post(
            "/api/v1/payments/stripe/checkout-sessions", json={"pack_id": "credits-1000"}, headers=headers
        )
        assert refused.status_code == 503
        assert refused.json["missing"] == ["STRIPE_WEBHOOK_SECRET"]
        before = event_count(services)
        session = stripe_fake[1].create_session(
            {"line_items": [{"price_data": {"unit_amount": 2400, "currency": "usd"}}]}
        )[1]
        forged = stripe_fake[1].event("checkout.session.completed", session)
        for secret in (" ", ""):  # "signed" with the empty secret: still refused, never accepted unsigned
            answer = deliver_stripe(client, forged, secret=secret)
            assert answer.status_code == 503, answer.json
            assert answer.json["type"].endswith("/payment-rail-disabled")
            assert "STRIPE_WEBHOOK_SECRET" in answer.json["detail"]
        assert event_count(services) == before


def test_refund_reported_before_fulfilment_ends_where_it_started(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    state = stripe_fake[1]
    paid = state.pay_session(started["id"])
    charge, _refund = state.refund(paid["payment_intent"], 2400)
    assert deliver_stripe(client, state.event("charge.refunded", charge)).status_code == 200
    wait_for(
        lambda: order_row(services, started["order_id"]).amount_refunded == "2400", what="refund recorded"
    )
    assert posted(services, user_id) == WELCOME
    assert deliver_stripe(client, state.event("checkout.session.completed", paid)).status_code == 200
    order = wait_status(services, started["order_id"], "refunded")
    assert (order.credited, order.clawed_back) == (1000 * M, 1000 * M)
    assert posted(services, user_id) == WELCOME
    assert purchases(services, started["order_id"]) == [("purchase", 1000 * M), ("refund", 1000 * M)]
    ledger_clean(services)


def test_two_partial_refunds_claw_back_only_the_new_part_in_any_order(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    in_order, reversed_ = checkout(client, headers), checkout(client, headers)
    for started in (in_order, reversed_):
        pay_checkout(client, services, state, started)
    refunds = {}
    for started in (in_order, reversed_):
        intent = state.sessions[started["id"]]["payment_intent"]
        first = state.event("charge.refunded", state.refund(intent, 600)[0])  # cumulative 600
        second = state.event("charge.refunded", state.refund(intent, 1200)[0])  # cumulative 1800
        refunds[started["order_id"]] = (first, second)
    # In order: 600 of 2400 takes 250 credits, then the cumulative 1800 takes 500 more (not 750).
    first, second = refunds[in_order["order_id"]]
    deliver_stripe(client, first)
    wait_for(lambda: order_row(services, in_order["order_id"]).clawed_back == 250 * M, what="first refund")
    deliver_stripe(client, second)
    wait_for(
        lambda: order_row(services, in_order["order_id"]).amount_refunded == "1800", what="second refund"
    )
    # Out of order: the later total first, then the older one arrives late, and both come again.
    first, second = refunds[reversed_["order_id"]]
    for delivery in (second, first, second, first):
        assert deliver_stripe(client, delivery).status_code == 200
    wait_for(
        lambda: order_row(services, reversed_["order_id"]).amount_refunded == "1800", what="reversed refunds"
    )
    time.sleep(1)
    for started in (in_order, reversed_):
        order = order_row(services, started["order_id"])
        assert (order.status, order.amount_refunded, order.clawed_back) == ("refunded", "1800", 750 * M)
    assert purchases(services, in_order["order_id"]) == [
        ("purchase", 1000 * M),
        ("refund", 250 * M),
        ("refund", 500 * M),
    ]
    # Out of order, the worker's pool may apply the two totals in either order (750 at once, or 250 then
    # 500): what must hold is the total taken back, each refund step booked once, the books at zero.
    reversed_entries = purchases(services, reversed_["order_id"])
    assert reversed_entries[0] == ("purchase", 1000 * M)
    assert {kind for kind, _ in reversed_entries[1:]} == {"refund"}
    assert sum(amount for _, amount in reversed_entries[1:]) == 750 * M
    assert sorted(amount for _, amount in reversed_entries[1:]) in ([750 * M], [250 * M, 500 * M])
    assert posted(services, user_id) == WELCOME + 2 * 1000 * M - 2 * 750 * M
    ledger_clean(services)


def test_dispute_lost_then_reinstated_goes_through_debt(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    started, paid = credited_checkout(client, services, state, headers)
    with services.uow(account_of=user_id) as connection:  # the user spends most of it
        ledger.adjust(
            connection, user_id=user_id, amount=-1500 * M, reason="spent", idempotency_key=f"spend:{user_id}"
        )
    dispute = state.dispute(paid["payment_intent"])
    assert deliver_stripe(client, state.event("charge.dispute.funds_withdrawn", dispute)).status_code == 200
    wait_status(services, started["order_id"], "disputed")
    assert (posted(services, user_id), debt(services, user_id)) == (0, 500 * M)  # a clawback never fails
    deliver_stripe(client, state.event("charge.dispute.funds_withdrawn", dispute))  # redelivered: once
    assert deliver_stripe(client, state.event("charge.dispute.funds_reinstated", dispute)).status_code == 200
    wait_status(services, started["order_id"], "credited")
    time.sleep(0.5)
    assert (posted(services, user_id), debt(services, user_id)) == (500 * M, 0)
    kinds = [kind for kind, _ in purchases(services, started["order_id"])]
    assert kinds == ["purchase", "clawback", "debt", "debt_repayment", "purchase"]
    ledger_clean(services)


def test_a_lost_webhook_is_healed_by_the_reconciler(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    stripe_fake[1].pay_session(started["id"])  # paid at Stripe; the webhook never arrives
    reconciler.sweep(services)
    wait_status(services, started["order_id"], "credited")
    assert posted(services, user_id) == WELCOME + 1000 * M
    reconciler.sweep(services)  # asking again changes nothing
    time.sleep(0.5)
    assert purchases(services, started["order_id"]) == [("purchase", 1000 * M)]
    ledger_clean(services)


def test_an_unpaid_order_expires_at_stripe_and_here(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    user_id, headers = user
    started = checkout(client, headers)
    reconciler.sweep(services, now=datetime.now(UTC) + timedelta(days=2))
    order = wait_status(services, started["order_id"], "expired")
    assert stripe_fake[1].sessions[started["id"]]["status"] == "expired"
    assert order.credited == 0
    assert posted(services, user_id) == WELCOME


@pytest.mark.parametrize(("amount", "currency"), [(100, None), (None, "eur")])
def test_an_amount_or_currency_that_does_not_match_is_refused(  # noqa: PLR0917 - fixtures
    client: FlaskClient,
    services: Services,
    stripe_fake: Any,
    user: Any,
    admin: dict[str, str],
    amount: int | None,
    currency: str | None,
) -> None:
    user_id, headers = user
    started = checkout(client, headers)
    paid = stripe_fake[1].pay_session(started["id"], amount=amount, currency=currency)
    assert deliver_stripe(client, stripe_fake[1].event("checkout.session.completed", paid)).status_code == 200
    order = wait_status(services, started["order_id"], "failed")
    assert order.failure.startswith("amount mismatch")
    assert posted(services, user_id) == WELCOME
    assert purchases(services, started["order_id"]) == []
    # An admin sends the refused payment back, whole and in its own currency; the ledger does not move.
    path = f"/api/v1/admin/payments/{started['order_id']}/refund"
    assert client.post(path, json={"amount": "1"}, headers=admin).status_code == 422  # whole only
    answer = client.post(path, json={}, headers=admin)
    assert answer.status_code == 200, answer.json
    charge = stripe_fake[1].charges[stripe_fake[1].intents[paid["payment_intent"]]["latest_charge"]]
    assert charge["amount_refunded"] == paid["amount_total"]
    wait_for(
        lambda: order_row(services, started["order_id"]).amount_refunded == str(paid["amount_total"]),
        what="refund recorded",
    )
    assert client.post(path, json={}, headers=admin).status_code == 409  # nothing left to send back
    assert posted(services, user_id) == WELCOME
    assert purchases(services, started["order_id"]) == []
    # The audit log has the one refund that happened (the refused ones changed nothing), before and after.
    audit = client.get(
        "/api/v1/admin/audit", headers=admin, query_string={"target": f"order:{started['order_id']}"}
    ).json["items"]
    assert [row["action"] for row in audit] == ["payment.refund"]
    assert audit[0]["before"]["amount_refunded"] in (None, "0")
    assert audit[0]["after"]["rail"] == "stripe"
    assert "deposit_address" not in audit[0]["after"]
    ledger_clean(services)


def test_async_failure_and_expiry_end_orders_without_credit(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    failing, expiring = checkout(client, headers), checkout(client, headers)
    state.pay_session(failing["id"], asynchronous=True)
    failed = state.settle_async(failing["id"], succeeded=False)
    deliver_stripe(client, state.event("checkout.session.async_payment_failed", failed))
    deliver_stripe(client, state.event("checkout.session.expired", state.expire_session(expiring["id"])[1]))
    assert wait_status(services, failing["order_id"], "failed").credited == 0
    assert wait_status(services, expiring["order_id"], "expired").credited == 0
    assert posted(services, user_id) == WELCOME


def test_admin_refund_claws_back_once_and_the_webhook_adds_nothing(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, admin: dict[str, str]
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    started, paid = credited_checkout(client, services, state, headers)
    assert (
        client.post(
            f"/api/v1/admin/payments/{started['order_id']}/refund", json={"amount": "1200"}, headers=headers
        ).status_code
        == 403
    )
    answer = client.post(
        f"/api/v1/admin/payments/{started['order_id']}/refund",
        json={"amount": "1200", "reason": "duplicate"},
        headers=admin,
    )
    assert answer.status_code == 200, answer.json
    wait_status(services, started["order_id"], "refunded")
    charge = state.charges[state.intents[paid["payment_intent"]]["latest_charge"]]
    assert charge["amount_refunded"] == 1200
    refund = next(r for r in state.refunds.values() if r["charge"] == charge["id"])
    assert (refund["reason"], refund["metadata"]) == ("duplicate", {"reason": "duplicate"})  # sent to Stripe
    deliver_stripe(client, state.event("charge.refunded", charge))  # Stripe's own webhook for it
    time.sleep(1)
    assert posted(services, user_id) == WELCOME + 500 * M
    assert purchases(services, started["order_id"]) == [("purchase", 1000 * M), ("refund", 500 * M)]
    too_much = client.post(
        f"/api/v1/admin/payments/{started['order_id']}/refund", json={"amount": "1300"}, headers=admin
    )
    assert too_much.status_code == 422
    listed = client.get(f"/api/v1/admin/payments?user_id={user_id}", headers=admin).json["items"]
    assert [o["amount_refunded"] for o in listed] == ["1200"]
    ledger_clean(services)


def test_an_admin_refund_retried_after_a_lost_answer_refunds_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, admin: dict[str, str]
) -> None:
    _user_id, headers = user
    state = stripe_fake[1]
    started, paid = credited_checkout(client, services, state, headers)
    retried = {**admin, "Idempotency-Key": f"refund-{started['order_id']}"}
    path = f"/api/v1/admin/payments/{started['order_id']}/refund"
    # Stripe refunds; its answer (and the SDK's two retries') never arrive.
    with for_a_while(state, lose_answers=3):
        assert client.post(path, json={"amount": "600"}, headers=retried).status_code >= 500
    charge = state.charges[state.intents[paid["payment_intent"]]["latest_charge"]]
    assert charge["amount_refunded"] == 600  # it did happen at Stripe
    deliver_stripe(client, state.event("charge.refunded", charge))  # and its webhook moved the order
    wait_status(services, started["order_id"], "refunded")
    again = client.post(path, json={"amount": "600"}, headers=retried)  # the admin retries
    assert again.status_code == 200, again.json
    assert charge["amount_refunded"] == 600  # the same refund replayed, not a second one
    ledger_clean(services)


def test_a_dispute_reinstated_before_its_withdrawal_ends_credited(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    started, paid = credited_checkout(client, services, state, headers)
    dispute = state.dispute(paid["payment_intent"])
    withdrawn = state.event("charge.dispute.funds_withdrawn", dispute)
    won = state.event("charge.dispute.funds_reinstated", {**dispute, "status": "won"})
    assert deliver_stripe(client, won).status_code == 200  # the won dispute's event arrives first
    wait_for(lambda: len(purchases(services, started["order_id"])) == 3, what="reinstatement booked")
    assert deliver_stripe(client, withdrawn).status_code == 200  # the withdrawal's comes late
    wait_for(lambda: event_status(services, withdrawn["id"]) != "received", what="withdrawal applied")
    time.sleep(0.5)
    order = order_row(services, started["order_id"])
    assert order.status == "credited"
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert purchases(services, started["order_id"]) == [
        ("purchase", 1000 * M),
        ("clawback", 1000 * M),
        ("purchase", 1000 * M),
    ]
    ledger_clean(services)


def event_status(services: Services, event_id: str) -> str | None:
    with services.engine.connect() as connection:
        found = connection.execute(
            select(events.c.status).where(events.c.provider_event_id == event_id)
        ).scalar_one_or_none()
    return None if found is None else str(found)


def test_an_event_of_the_other_mode_than_the_key_is_refused(
    pay_settings: dict[str, str], client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    _user_id, headers = user
    state = stripe_fake[1]
    started = checkout(client, headers)
    paid = state.pay_session(started["id"])
    before = event_count(services)
    live = {**state.event("checkout.session.completed", paid), "livemode": True}
    unmarked = {k: v for k, v in state.event("checkout.session.completed", paid).items() if k != "livemode"}
    for event in (live, unmarked):  # the suite's key is a test key
        assert_problem(deliver_stripe(client, event), 400, "/livemode-mismatch")
    with services_with(pay_settings, STRIPE_SECRET_KEY="sk_live_creditflow") as live_key:
        answer = deliver_stripe(client_of(live_key), state.event("checkout.session.completed", paid))
        assert answer.status_code == 400, answer.json  # a test event for a live key
        assert answer.json["type"].endswith("/livemode-mismatch")
    assert event_count(services) == before
    time.sleep(0.5)
    assert order_row(services, started["order_id"]).status == "pending"


def test_an_open_dispute_holds_its_credits_until_it_ends(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    for outcome in ("won", "lost"):
        started, paid = credited_checkout(client, services, state, headers)
        dispute = state.dispute(paid["payment_intent"])
        posted_before, held_before = posted(services, user_id), held(services, user_id)
        opened = state.event("charge.dispute.created", dispute)
        assert deliver_stripe(client, opened).status_code == 200
        wait_for(lambda h=held_before: held(services, user_id) == h + 1000 * M, what="disputed credits held")
        deliver_stripe(client, state.event("charge.dispute.created", dispute))  # told twice: held once
        if outcome == "won":
            closed = state.event("charge.dispute.closed", {**dispute, "status": "won"})
            assert deliver_stripe(client, closed).status_code == 200
            wait_for(lambda h=held_before: held(services, user_id) == h, what="hold released")
            assert order_row(services, started["order_id"]).status == "credited"
            assert posted(services, user_id) == posted_before
        else:
            lost = state.event("charge.dispute.funds_withdrawn", dispute)
            assert deliver_stripe(client, lost).status_code == 200
            wait_status(services, started["order_id"], "disputed")
            assert held(services, user_id) == held_before  # the clawback took them instead
            assert posted(services, user_id) == posted_before - 1000 * M
    time.sleep(0.5)
    assert held(services, user_id) == 0
    ledger_clean(services)


def test_top_ups_past_the_velocity_limit_are_refused_with_429(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any
) -> None:
    from orchestration.payments.orders import VELOCITY

    user_id, headers = user
    _window, most = VELOCITY[0]
    for _ in range(most):
        checkout(client, headers)
    sessions = len(stripe_fake[1].sessions)
    for path in ("/api/v1/payments/stripe/checkout-sessions", "/api/v1/payments/paypal/orders"):
        refused = client.post(path, json={"pack_id": "credits-1000"}, headers=headers)
        assert_problem(refused, 429, "/top-up-velocity")
    assert len(stripe_fake[1].sessions) == sessions  # nothing was created at the provider
    with services.engine.connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(orders).where(orders.c.user_id == user_id)
        ).scalar_one()
    assert count == most


def fraud_warning(state: Any, paid: dict[str, Any]) -> dict[str, Any]:
    """Stripe's radar.early_fraud_warning about a paid Checkout's charge."""
    intent = state.intents[paid["payment_intent"]]
    return {
        "id": state.new_id("issfr"),
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": intent["latest_charge"],
        "payment_intent": intent["id"],
        "fraud_type": "made_with_stolen_card",
    }


def test_an_early_fraud_warning_freezes_the_unspent_credits_until_a_refund(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, admin: dict[str, str]
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    trusted, trusted_paid = credited_checkout(client, services, state, headers)
    first_warning = state.event("radar.early_fraud_warning.created", fraud_warning(state, trusted_paid))
    deliver_stripe(client, first_warning)
    wait_for(lambda: held(services, user_id) == 1000 * M, what="credits frozen")
    release = f"/api/v1/admin/payments/{trusted['order_id']}/release"
    assert client.post(release, headers=headers).status_code == 403
    freed = client.post(release, headers=admin)
    assert freed.status_code == 200, freed.json  # an operator reviewed it and trusts the payment
    assert freed.json["failure"].startswith("fraud warning reviewed")
    assert held(services, user_id) == 0
    assert client.post(release, headers=admin).status_code == 409  # nothing frozen any more
    audited = client.get(
        "/api/v1/admin/audit", headers=admin, query_string={"target": f"order:{trusted['order_id']}"}
    ).json["items"]
    assert [row["action"] for row in audited] == ["payment.release"]  # the refused second one: not
    assert audited[0]["before"]["failure"].startswith("early fraud warning")
    assert audited[0]["after"]["failure"].startswith("fraud warning reviewed")
    started, paid = credited_checkout(client, services, state, headers)
    with services.uow(account_of=user_id) as connection:  # 2900 of 3000 spent: 100 left unspent
        ledger.adjust(
            connection, user_id=user_id, amount=-2900 * M, reason="spent", idempotency_key=f"efw:{user_id}"
        )
    warning = fraud_warning(state, paid)
    warned = state.event("radar.early_fraud_warning.created", warning)
    assert deliver_stripe(client, warned).status_code == 200
    wait_for(lambda: held(services, user_id) == 100 * M, what="unspent credits frozen")
    deliver_stripe(client, state.event("radar.early_fraud_warning.created", warning))  # again: frozen once
    listed = client.get(f"/api/v1/admin/payments?user_id={user_id}", headers=admin).json["items"]
    assert listed[0]["failure"].startswith("early fraud warning (made_with_stolen_card)")  # for an operator
    refunded = client.post(f"/api/v1/admin/payments/{started['order_id']}/refund", json={}, headers=admin)
    assert refunded.status_code == 200, refunded.json
    wait_status(services, started["order_id"], "refunded")
    wait_for(lambda: held(services, user_id) == 0, what="freeze released by the refund")
    assert (posted(services, user_id), debt(services, user_id)) == (0, 900 * M)
    ledger_clean(services)


@pytest.mark.parametrize("failure_first", [False, True])
def test_a_failed_refund_gives_the_credits_back_once(
    client: FlaskClient, services: Services, stripe_fake: Any, user: Any, failure_first: bool
) -> None:
    user_id, headers = user
    state = stripe_fake[1]
    started, paid = credited_checkout(client, services, state, headers)
    charge, refund = state.refund(paid["payment_intent"], 1200)
    refunded = state.event("charge.refunded", charge)  # cumulative 1200: 500 credits taken back
    failed = state.fail_refund(refund["id"])
    events = [state.event("charge.refund.updated", failed), state.event("refund.failed", failed)]
    # The failure may arrive before the refund it undoes: it waits (retried) until the refund is booked.
    for delivery in ([*events, refunded] if failure_first else [refunded, *events]):
        assert deliver_stripe(client, delivery).status_code == 200
        time.sleep(0.3)
    wait_for(lambda: len(purchases(services, started["order_id"])) == 3, what="credits given back")
    order = wait_status(services, started["order_id"], "credited")
    assert order.amount_refunded == "0"
    assert order.failure.startswith("refund failed")
    time.sleep(0.5)
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert purchases(services, started["order_id"]) == [
        ("purchase", 1000 * M),
        ("refund", 500 * M),
        ("purchase", 500 * M),
    ]
    ledger_clean(services)
