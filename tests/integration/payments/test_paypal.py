"""PayPal Orders v2 top-ups on real services, against a local server speaking PayPal's REST API
(OAuth, orders, captures with PayPal-Request-Id, refunds, verify-webhook-signature)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from orchestration.payments import reconciler
from orchestration.services import Services
from tests.integration.payments.conftest import (
    M,
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
    client_of,
    credited_once,
    for_a_while,
    services_with,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]


def create(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    answer = client.post("/api/v1/payments/paypal/orders", json={"pack_id": "credits-1000"}, headers=headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return dict(answer.json)


def approved_order(
    client: FlaskClient, paypal_fake: Any, headers: dict[str, str]
) -> tuple[dict[str, Any], Any]:
    """A PayPal order the buyer has approved: (our answer, the PayPal state)."""
    created = create(client, headers)
    paypal_fake[1].approve(created["id"])
    return created, paypal_fake[1]


def capture(client: FlaskClient, created: dict[str, Any], headers: dict[str, str]) -> Any:
    """The buyer's browser asks us to capture the PayPal order it approved."""
    return client.post(f"/api/v1/payments/paypal/orders/{created['id']}/capture", headers=headers)


def reversal(order_id: str, reversal_id: str, value: str) -> dict[str, Any]:
    """A capture reversed by the buyer's bank (PAYMENT.CAPTURE.REVERSED's resource)."""
    return {
        "id": reversal_id,
        "status": "COMPLETED",
        "amount": {"value": value, "currency_code": "USD"},
        "custom_id": order_id,
    }


def deliver(
    client: FlaskClient,
    paypal: Any,
    event: dict[str, Any],
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    body = raw if raw is not None else json.dumps(event, indent=1).encode()  # PayPal's own spacing
    signed = headers if headers is not None else paypal.signed_headers(body)
    return client.post(
        "/api/v1/payments/paypal/webhook", data=body, headers={"Content-Type": "application/json", **signed}
    )


def test_capture_credits_once_and_a_retried_capture_returns_the_first(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created = create(client, headers)
    assert created["approve_url"].startswith("https://paypal.test/")
    order = order_row(services, created["order_id"])
    assert (order.provider_ref, order.amount, order.currency) == (created["id"], "2400", "USD")
    paypal = paypal_fake[1]
    paypal.approve(created["id"])
    for _ in range(3):  # the browser retries: PayPal-Request-Id makes it one capture
        answer = capture(client, created, headers)
        assert (answer.status_code, answer.json["status"]) == (202, "COMPLETED")
    assert paypal.capture_calls == 1
    credited = wait_status(services, created["order_id"], "credited")
    captured = paypal.captures[credited.payment_ref]
    # PayPal's webhook for the same capture credits nothing more.
    assert deliver(client, paypal, paypal.event("PAYMENT.CAPTURE.COMPLETED", captured)).status_code == 200
    time.sleep(1)
    credited_once(services, user_id, created["order_id"])


def test_a_pending_capture_waits_then_the_webhook_credits(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)
    with for_a_while(paypal, capture_status="PENDING"):
        answer = capture(client, created, headers)
    assert answer.json["status"] == "PENDING"
    time.sleep(1)
    assert order_row(services, created["order_id"]).status == "pending"
    assert posted(services, user_id) == WELCOME
    capture_id = paypal.orders[created["id"]]["purchase_units"][0]["payments"]["captures"][0]["id"]
    cleared = paypal.complete_capture(capture_id)
    assert deliver(client, paypal, paypal.event("PAYMENT.CAPTURE.COMPLETED", cleared)).status_code == 200
    wait_status(services, created["order_id"], "credited")
    assert posted(services, user_id) == WELCOME + 1000 * M
    ledger_clean(services)


def test_a_denied_capture_fails_the_order(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)
    with for_a_while(paypal, capture_status="DECLINED"):
        capture(client, created, headers)
    assert wait_status(services, created["order_id"], "failed").credited == 0
    assert posted(services, user_id) == WELCOME


def test_webhooks_are_verified_on_the_exact_raw_body(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)
    forged_capture = {
        "id": "CAPFORGED",
        "status": "COMPLETED",
        "amount": {"currency_code": "USD", "value": "24.00"},
        "custom_id": created["order_id"],
    }
    raw = json.dumps(paypal.event("PAYMENT.CAPTURE.COMPLETED", forged_capture), indent=1).encode()
    forged = raw.replace(b'"24.00"', b'"24.00" ')  # signed body, then touched
    assert deliver(client, paypal, {}, raw=forged, headers=paypal.signed_headers(raw)).status_code == 400
    assert (
        deliver(
            client, paypal, {}, raw=raw, headers=paypal.signed_headers(raw, webhook_id="WH-other")
        ).status_code
        == 400
    )
    assert deliver(client, paypal, {}, raw=raw, headers={}).status_code == 400
    time.sleep(0.5)
    assert order_row(services, created["order_id"]).status == "pending"
    assert posted(services, user_id) == WELCOME
    # The same bytes, correctly signed, pass: what PayPal checked is exactly what arrived.
    assert deliver(client, paypal, {}, raw=raw).status_code == 200
    wait_status(services, created["order_id"], "credited")
    ledger_clean(services)


def test_refunds_and_a_reversal_claw_back(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any, admin: dict[str, str]
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)
    capture(client, created, headers)
    order = wait_status(services, created["order_id"], "credited")
    answer = client.post(
        f"/api/v1/admin/payments/{created['order_id']}/refund", json={"amount": "600"}, headers=admin
    )
    assert answer.status_code == 200, answer.json
    wait_status(services, created["order_id"], "refunded")
    # A refund made on PayPal's side arrives by webhook (its total counts, not the increment).
    _status, refund = paypal.refund(order.payment_ref, {"amount": {"value": "6.00", "currency_code": "USD"}})
    assert deliver(client, paypal, paypal.event("PAYMENT.CAPTURE.REFUNDED", refund)).status_code == 200
    # Applied before the reversal is sent: the worker's processes would otherwise race the two events.
    wait_for(lambda: order_row(services, created["order_id"]).clawed_back == 500 * M, what="refunds booked")
    reversed_ = reversal(created["order_id"], "REV1", "12.00")
    assert deliver(client, paypal, paypal.event("PAYMENT.CAPTURE.REVERSED", reversed_)).status_code == 200
    wait_status(services, created["order_id"], "disputed")
    time.sleep(0.5)
    # 1000 credited; refunds total 12.00 of 24.00 (500), the reversal of 12.00 another 500.
    assert posted(services, user_id) == WELCOME
    assert [kind for kind, _ in purchases(services, created["order_id"])] == [
        "purchase",
        "refund",
        "refund",
        "clawback",
    ]
    ledger_clean(services)


def test_an_approved_order_nobody_captured_is_captured_by_the_reconciler(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created = create(client, headers)
    paypal_fake[1].approve(created["id"])  # the buyer approved; our capture call was lost
    reconciler.sweep(services)
    wait_status(services, created["order_id"], "credited")
    assert posted(services, user_id) == WELCOME + 1000 * M
    ledger_clean(services)


def test_paypal_without_a_webhook_id_is_off(pay_settings: dict[str, str], user: Any) -> None:
    with services_with(pay_settings, PAYPAL_WEBHOOK_ID="") as off:
        client = client_of(off)
        answer = client.post(
            "/api/v1/payments/paypal/webhook", data=b"{}", headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 503
        assert answer.json["missing"] == ["PAYPAL_WEBHOOK_ID"]
        refused = client.post(
            "/api/v1/payments/paypal/orders", json={"pack_id": "credits-1000"}, headers=user[1]
        )
        assert refused.status_code == 503


def test_a_webhook_body_that_is_not_utf8_is_a_400_problem(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created = create(client, headers)
    paypal = paypal_fake[1]
    raw = b'{"id": "WH-\xff\xfe", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {}}'
    answer = deliver(client, paypal, {}, raw=raw, headers=paypal.signed_headers(raw))
    assert_problem(answer, 400, "malformed-webhook")
    assert order_row(services, created["order_id"]).status == "pending"
    assert posted(services, user_id) == WELCOME


def test_capturing_an_unapproved_order_is_a_409_and_changes_nothing(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created = create(client, headers)  # the buyer has not approved it
    assert_problem(capture(client, created, headers), 409, "not-approved")
    assert order_row(services, created["order_id"]).status == "pending"
    paypal_fake[1].approve(created["id"])  # approved later: the capture goes through
    captured = capture(client, created, headers)
    assert (captured.status_code, captured.json["status"]) == (202, "COMPLETED")
    wait_status(services, created["order_id"], "credited")
    assert posted(services, user_id) == WELCOME + 1000 * M


def test_an_order_is_captured_as_soon_as_paypal_says_the_buyer_approved_it(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)  # the browser never came back
    calls = paypal.capture_calls
    approved = paypal.event("CHECKOUT.ORDER.APPROVED", paypal.orders[created["id"]])
    assert deliver(client, paypal, approved).status_code == 200
    wait_status(services, created["order_id"], "credited")  # no buyer's capture, no reconciler pass
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert deliver(client, paypal, approved).status_code == 200  # redelivered: nothing more
    late = capture(client, created, headers)
    assert (late.status_code, late.json["status"]) == (202, "COMPLETED")  # the first capture, replayed
    time.sleep(0.5)
    assert paypal.capture_calls == calls + 1
    assert purchases(services, created["order_id"]) == [("purchase", 1000 * M)]
    ledger_clean(services)


def _dispute(capture_id: str, status: str, outcome: str | None = None) -> dict[str, Any]:
    """PayPal's dispute resource (Disputes API v1) about one capture."""
    dispute: dict[str, Any] = {
        "dispute_id": f"PP-D-{capture_id}",
        "reason": "UNAUTHORISED",
        "status": status,
        "dispute_amount": {"currency_code": "USD", "value": "24.00"},
        "disputed_transactions": [{"seller_transaction_id": capture_id}],
        "dispute_life_cycle_stage": "CHARGEBACK",
    }
    if outcome:
        dispute["dispute_outcome"] = {"outcome_code": outcome}
    return dispute


def test_a_dispute_freezes_the_credits_and_a_won_one_gives_back_what_its_reversal_took(
    client: FlaskClient, services: Services, paypal_fake: Any, user: Any
) -> None:
    user_id, headers = user
    created, paypal = approved_order(client, paypal_fake, headers)
    capture(client, created, headers)
    capture_id = wait_status(services, created["order_id"], "credited").payment_ref
    opened = paypal.event("CUSTOMER.DISPUTE.CREATED", _dispute(capture_id, "WAITING_FOR_SELLER_RESPONSE"))
    assert deliver(client, paypal, opened).status_code == 200
    wait_for(lambda: held(services, user_id) == 1000 * M, what="disputed credits frozen")
    reversed_ = reversal(created["order_id"], f"REV-{capture_id}", "24.00")
    assert deliver(client, paypal, paypal.event("PAYMENT.CAPTURE.REVERSED", reversed_)).status_code == 200
    wait_status(services, created["order_id"], "disputed")
    assert (posted(services, user_id), held(services, user_id)) == (WELCOME, 0)  # clawed back, not frozen
    updated = paypal.event("CUSTOMER.DISPUTE.UPDATED", _dispute(capture_id, "UNDER_REVIEW"))
    assert deliver(client, paypal, updated).status_code == 200  # still open: nothing frozen again
    resolved = _dispute(capture_id, "RESOLVED", "RESOLVED_SELLER_FAVOUR")
    won = paypal.event("CUSTOMER.DISPUTE.RESOLVED", resolved)
    assert deliver(client, paypal, won).status_code == 200
    wait_status(services, created["order_id"], "credited")
    assert deliver(client, paypal, won).status_code == 200  # redelivered: given back once
    time.sleep(0.5)
    assert (posted(services, user_id), held(services, user_id)) == (WELCOME + 1000 * M, 0)
    kinds = [kind for kind, _ in purchases(services, created["order_id"])]
    assert [kind for kind in kinds if kind != "hold"] == ["purchase", "clawback", "purchase"]
    assert kinds.count("hold") == 1  # the freeze: once, though the dispute was told three times
    ledger_clean(services)
