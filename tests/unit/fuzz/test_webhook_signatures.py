"""Webhook signatures under generated input: Stripe's `Stripe-Signature` (checked by the stripe library inside
StripeGateway.verify) and PayPal's verification request (PaypalGateway.verify against a local server speaking
PayPal's verify-webhook-signature). A signed body verifies whatever its bytes and spacing; a touched body,
header, secret or clock never does; no input raises anything but the refusals the API answers with 400."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from hypothesis import assume, given
from hypothesis import strategies as st

from payments.facts import InvalidSignature, MalformedWebhook
from payments.paypal_gateway import SIGNATURE_HEADERS, PaypalGateway
from payments.stripe_gateway import StripeGateway
from tests.support.paypal_server import PaypalState, paypal_server
from tests.support.stripe_server import sign
from tests.unit.fuzz import FUZZ, FUZZ_REQUESTS

SECRET = "whsec_fuzz"
TOLERANCE = stripe.Webhook.DEFAULT_TOLERANCE
GATEWAY = StripeGateway(stripe.StripeClient("sk_test_fuzz"), SECRET)
LIVE = StripeGateway(stripe.StripeClient("sk_live_fuzz"), SECRET, livemode=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@st.composite
def stripe_events(draw: st.DrawFn, livemode: bool = False) -> dict[str, Any]:
    return {
        "id": draw(st.text(min_size=1, max_size=30)),
        "type": draw(st.text(max_size=40)),
        "livemode": livemode,
        "data": {"object": draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))},
    }


@st.composite
def serialised(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    """The event in one of the spellings a sender may use: spacing, key order, escaped or raw unicode."""
    text = json.dumps(
        event,
        indent=draw(st.sampled_from([None, 0, 1, 2, "\t"])),
        ensure_ascii=draw(st.booleans()),
        sort_keys=draw(st.booleans()),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )
    return text.encode()


@st.composite
def signature_headers(draw: st.DrawFn, payload: bytes, stamp: int, secret: str = SECRET) -> str:
    """A valid header for `payload` as Stripe may send it: other schemes and rotated secrets beside v1."""
    valid = sign(payload, secret, stamp).split(",")[1]
    others = draw(
        st.lists(
            st.sampled_from(
                [
                    f"v1={'0' * 64}",
                    f"v0={'a' * 64}",
                    "v1=deadbeef",
                    sign(payload, "whsec_old", stamp).split(",")[1],
                ]
            ),
            max_size=3,
        )
    )
    entries = draw(st.permutations([valid, *others]))
    return ",".join([f"t={stamp}", *entries])


@FUZZ
@given(data=st.data(), age=st.integers(-TOLERANCE + 5, TOLERANCE - 5))
def test_a_signed_stripe_event_verifies_in_any_spelling(data: st.DataObject, age: int) -> None:
    event = data.draw(stripe_events())
    payload = data.draw(serialised(event))
    header = data.draw(signature_headers(payload, int(time.time()) - age))
    assert GATEWAY.verify(payload, header) == json.loads(payload)


@FUZZ
@given(data=st.data(), where=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_a_touched_stripe_body_never_verifies(data: st.DataObject, where: int, byte: int) -> None:
    payload = data.draw(serialised(data.draw(stripe_events())))
    header = sign(payload, SECRET, int(time.time()))
    index = where % len(payload)
    assume(payload[index] != byte)
    touched = payload[:index] + bytes([byte]) + payload[index + 1 :]
    with pytest.raises(InvalidSignature):
        GATEWAY.verify(touched, header)


@FUZZ
@given(
    data=st.data(),
    # Only the past is bounded: the stripe library (like Stripe's other libraries) accepts a timestamp
    # ahead of our clock; such a header still needs the secret, and an event id is applied once.
    shift=st.integers(TOLERANCE + 1, 10**9),
    secret=st.text(min_size=1, max_size=20).filter(lambda s: s != SECRET),
)
def test_an_old_or_foreign_stripe_signature_never_verifies(
    data: st.DataObject, shift: int, secret: str
) -> None:
    payload = data.draw(serialised(data.draw(stripe_events())))
    now = int(time.time())
    with pytest.raises(InvalidSignature):
        GATEWAY.verify(payload, sign(payload, SECRET, now - shift))  # outside the 300 s tolerance
    with pytest.raises(InvalidSignature):
        GATEWAY.verify(payload, sign(payload, secret, now))


@FUZZ
@given(
    payload=st.binary(max_size=200) | st.builds(lambda t: t.encode(), st.text(max_size=100)),
    header=st.none()
    | st.text(max_size=120)
    | st.from_regex(r"\At=-?[0-9]{0,12}(,v[0-9]=[0-9a-f]{0,70}){0,3}\Z"),
    signed=st.booleans(),
)
def test_any_stripe_input_is_refused_cleanly_or_is_a_utf8_event(
    payload: bytes, header: str | None, signed: bool
) -> None:
    if signed:  # signed correctly, the body itself is then what is judged
        try:
            header = sign(payload, SECRET, int(time.time()))
        except UnicodeDecodeError:
            header = f"t={int(time.time())},v1={'0' * 64}"
    try:
        event = GATEWAY.verify(payload, header)
    except (InvalidSignature, MalformedWebhook):
        return
    # receive_webhook stores payload.decode(): what verifies must be UTF-8 text of an event object.
    assert json.loads(payload.decode("utf-8")) == event
    assert isinstance(event["id"], str)
    assert "type" in event
    assert event["livemode"] is False


@FUZZ
@given(data=st.data())
def test_a_live_event_is_refused_on_a_test_key_and_back(data: st.DataObject) -> None:
    for gateway, livemode in ((GATEWAY, True), (LIVE, False)):
        payload = data.draw(serialised(data.draw(stripe_events(livemode))))
        with pytest.raises(MalformedWebhook):
            gateway.verify(payload, sign(payload, SECRET, int(time.time())))


# --- PayPal ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paypal() -> Iterator[tuple[PaypalGateway, PaypalState]]:
    with paypal_server("fuzz-client", "fuzz-secret", "WH-FUZZ") as (base, state):
        gateway = PaypalGateway(
            client_id="fuzz-client", secret="fuzz-secret", webhook_id="WH-FUZZ", base_url=base, timeout=5.0
        )
        yield gateway, state


header_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)


@FUZZ_REQUESTS
@given(data=st.data(), transmission_id=header_text)
def test_a_signed_paypal_event_verifies_over_its_exact_bytes(
    paypal: tuple[PaypalGateway, PaypalState], data: st.DataObject, transmission_id: str
) -> None:
    gateway, state = paypal
    event = {
        "id": data.draw(st.text(min_size=1, max_size=20)),
        "event_type": "X",
        "resource": data.draw(json_values),
    }
    raw = data.draw(serialised(event))
    headers = {**state.signed_headers(raw), "PAYPAL-TRANSMISSION-ID": transmission_id}
    headers["PAYPAL-TRANSMISSION-SIG"] = _resign(headers, raw)
    gateway.verify(raw, headers)  # quotes, backslashes and unicode in a header don't break the request
    spaced = raw.replace(b":", b": ", 1)  # the same event re-spaced: not what was signed
    with pytest.raises(InvalidSignature):
        gateway.verify(spaced, headers)


@FUZZ_REQUESTS
@given(
    headers=st.dictionaries(st.sampled_from(sorted(SIGNATURE_HEADERS.values())), header_text, max_size=5),
    raw=st.builds(lambda v: json.dumps({"id": "WH-1", "x": v}).encode(), json_values),
)
def test_forged_paypal_headers_are_refused(
    paypal: tuple[PaypalGateway, PaypalState], headers: dict[str, str], raw: bytes
) -> None:
    gateway, _state = paypal
    # Refused as a bad signature (400); ProviderError only for PayPal failing (retryable: 503), never here.
    with pytest.raises(InvalidSignature):
        gateway.verify(raw, headers)


def _resign(headers: dict[str, str], raw: bytes) -> str:
    from tests.support.paypal_server import transmission_sig

    return transmission_sig(
        headers["PAYPAL-TRANSMISSION-ID"], headers["PAYPAL-TRANSMISSION-TIME"], "WH-FUZZ", raw
    )
