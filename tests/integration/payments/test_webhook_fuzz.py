"""Both webhook endpoints under generated deliveries (Hypothesis), on the payments suite's real services: any
body with a missing, forged, stale or foreign signature is a 400 application/problem+json and records
nothing; a correctly signed delivery of a type creditflow does not handle is a 200 `ignored`, also
recording nothing. No input is a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from orchestration.payments.tables import events
from orchestration.services import Services
from payments.paypal_gateway import SIGNATURE_HEADERS
from tests.integration.payments.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.stripe_server import sign
from tests.unit.fuzz import FUZZ_REQUESTS

pytestmark = pytest.mark.slow
STRIPE = "/api/v1/payments/stripe/webhook"
PAYPAL = "/api/v1/payments/paypal/webhook"
REFUSALS = {"invalid-signature", "livemode-mismatch", "bad-webhook", "malformed-webhook"}

bodies = (
    st.binary(max_size=120)
    | st.text(max_size=80).map(str.encode)
    | st.builds(
        lambda i, t, live: json.dumps({"id": i, "type": t, "event_type": t, "livemode": live}).encode(),
        st.text(max_size=12),
        st.sampled_from(["checkout.session.completed", "PAYMENT.CAPTURE.COMPLETED", "x"]),
        st.booleans(),
    )
)


def _count(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def _refused(answer: Any) -> str:
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.content_type == "application/problem+json"
    problem = answer.json
    assert problem["status"] == 400
    return str(problem["type"]).rsplit("/", 1)[-1]


@FUZZ_REQUESTS
@given(
    body=bodies,
    header=st.sampled_from(["none", "garbage", "other-secret", "stale", "other-body", "live-event"]),
    garbage=st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=60),
)
def test_stripe_deliveries_without_a_good_signature_are_400_and_record_nothing(
    app: Flask, services: Services, body: bytes, header: str, garbage: str
) -> None:
    now = int(time.time())
    text = body.decode("utf-8", "replace")
    signature = {
        "none": None,
        "garbage": garbage,
        "other-secret": sign(text, "whsec_someone_else", now),
        "stale": sign(text, STRIPE_WEBHOOK_SECRET, now - 301),
        "other-body": sign(text + " ", STRIPE_WEBHOOK_SECRET, now),
        # Signed right, but a live event for the suite's test key (or not an event at all).
        "live-event": sign(text, STRIPE_WEBHOOK_SECRET, now),
    }[header]
    if header == "live-event":
        body = json.dumps({"id": "evt_fuzz", "type": "x", "livemode": True, "data": text}).encode()
        signature = sign(body, STRIPE_WEBHOOK_SECRET, now)
    before = _count(services)
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": signature} if signature else {})
    answer = app.test_client().post(STRIPE, data=body, headers=headers)
    assert _refused(answer) in REFUSALS
    assert _count(services) == before


@FUZZ_REQUESTS
@given(
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(sorted(SIGNATURE_HEADERS.values())),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30),
        max_size=5,
    ),
)
def test_paypal_deliveries_without_a_good_signature_are_400_and_record_nothing(
    app: Flask, services: Services, body: bytes, headers: dict[str, str]
) -> None:
    before = _count(services)
    answer = app.test_client().post(
        PAYPAL, data=body, headers={"Content-Type": "application/json", **headers}
    )
    assert _refused(answer) in REFUSALS
    assert _count(services) == before


@FUZZ_REQUESTS
@given(kind=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30))
def test_signed_deliveries_of_other_types_are_ignored(
    app: Flask, services: Services, paypal_fake: Any, kind: str
) -> None:
    client = app.test_client()  # a fixture's client is per test, not per example
    before = _count(services)
    stripe_body = json.dumps({"id": f"evt_{kind}", "type": f"fuzz.{kind}", "livemode": False}).encode()
    answer = client.post(
        STRIPE, data=stripe_body, headers={"Stripe-Signature": sign(stripe_body, STRIPE_WEBHOOK_SECRET)}
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    raw = json.dumps({"id": f"WH-{kind}", "event_type": f"FUZZ.{kind}", "resource": {}}, indent=1).encode()
    answer = client.post(
        PAYPAL, data=raw, headers={"Content-Type": "application/json", **paypal_fake[1].signed_headers(raw)}
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert _count(services) == before
