"""The pure rules of notifications: retry schedule and Retry-After, threshold bands, body limit, secrets
and their Standard Webhooks signatures, the thresholds preference's wire form."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import marshmallow as ma
import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from api.account.me import PreferencesSchema
from orchestration.notify import keys, outbox, schedule, thresholds
from orchestration.notify.errors import WebhookRefused
from orchestration.notify.watch import BITS, EVENT_TYPES, events_mask
from runtime.notify import DEFAULT_SCHEDULE, NotifySettings

SPEC = NotifySettings(WEBHOOK_RETRY_SCHEDULE_S=DEFAULT_SCHEDULE).webhook_schedule


def test_the_default_schedule_is_the_specifications() -> None:
    assert SPEC == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def test_delays_follow_the_schedule_with_bounded_jitter_then_give_up() -> None:
    rng = random.Random(7)
    for done, base in enumerate(SPEC):
        delay = schedule.next_delay(SPEC, done, jitter=0.1, rng=rng)
        assert delay is not None
        assert base * 0.9 <= delay <= base * 1.1
    assert schedule.next_delay(SPEC, len(SPEC), jitter=0.1) is None


def test_retry_after_is_honoured_for_429_and_503_only() -> None:
    common = {"jitter": 0.0, "max_retry_after_s": 3600.0}
    assert schedule.after_failure(SPEC, 1, status=429, retry_after="120", **common) == 120
    assert schedule.after_failure(SPEC, 1, status=503, retry_after="99999", **common) == 3600
    assert schedule.after_failure(SPEC, 1, status=500, retry_after="120", **common) == 5
    assert schedule.after_failure(SPEC, 1, status=429, retry_after=None, **common) == 5
    assert schedule.after_failure(SPEC, len(SPEC), status=429, retry_after="1", **common) is None
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert schedule.retry_after_s("Mon, 07 Dec 2026 12:01:00 GMT", now=now) == 60
    assert schedule.retry_after_s("soon", now=now) is None


def test_bands_and_thresholds() -> None:
    assert thresholds.as_list(None) == []
    assert thresholds.as_list(5) == [5]
    assert thresholds.as_list([30, 10, 30]) == [10, 30]
    assert thresholds.band([10, 30, 50], []) == (50, None)
    assert thresholds.band([10, 30, 50], [50]) == (30, 50)
    assert thresholds.band([10, 30, 50], [10, 30, 50]) == (None, 10)


def test_event_bits_are_distinct() -> None:
    assert len(set(BITS.values())) == len(EVENT_TYPES)
    assert events_mask(["job.succeeded", "balance.low"]) == BITS["job.succeeded"] | BITS["balance.low"]


def test_the_body_is_thin_and_bounded() -> None:
    moment = datetime(2026, 12, 7, tzinfo=UTC)
    assert outbox.body("job.succeeded", {"job_id": "j"}, moment) == (
        '{"data":{"job_id":"j"},"timestamp":"2026-12-07T00:00:00Z","type":"job.succeeded"}'
    )
    with pytest.raises(ValueError, match="over"):
        outbox.body("job.succeeded", {"x": "y" * 21_000}, moment)


def test_secrets_are_sealed_and_sign_per_standard_webhooks() -> None:
    key = Fernet.generate_key().decode()
    secret, old = keys.new_secret(), keys.new_secret()
    assert secret.startswith("whsec_")
    sealed = keys.seal(key, secret)
    assert secret not in sealed
    assert keys.unseal(f"{Fernet.generate_key().decode()},{key}", sealed) == secret  # rotated keys still open
    now = datetime.now(UTC)
    body = '{"data":{},"timestamp":"x","type":"webhook.test"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": keys.signature([secret, old], msg_id="msg_1", timestamp=now, body=body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    assert Webhook(old).verify(body, headers)["type"] == "webhook.test"


def test_webhooks_fail_closed_without_a_key() -> None:
    with pytest.raises(WebhookRefused) as refused:
        keys.seal("", keys.new_secret())
    assert refused.value.status == 503
    with pytest.raises(WebhookRefused):
        keys.unseal(Fernet.generate_key().decode(), keys.seal(Fernet.generate_key().decode(), "whsec_x"))


def test_the_threshold_preference_takes_one_amount_or_a_list() -> None:
    schema = PreferencesSchema()
    assert schema.load({"low_balance_threshold": "12.5"}) == {"low_balance_threshold": 12_500_000}
    assert schema.load({"low_balance_threshold": ["50", "10"]}) == {
        "low_balance_threshold": [10_000_000, 50_000_000]
    }
    assert schema.dump({"low_balance_threshold": [10_000_000, 50_000_000]}) == {
        "low_balance_threshold": ["10", "50"]
    }
    assert schema.load({"low_balance_threshold": ["5", "5.0"]}) == {"low_balance_threshold": [5_000_000]}
    for bad in ([], ["1"] * 6, ["-1"], [3], "1.0000001", {}):
        with pytest.raises(ma.ValidationError):
            schema.load({"low_balance_threshold": bad})


def test_a_bad_schedule_is_refused() -> None:
    from pydantic import ValidationError

    for bad in ("", "5,-1", "soon"):
        with pytest.raises(ValidationError):
            NotifySettings(WEBHOOK_RETRY_SCHEDULE_S=bad)
    assert timedelta(seconds=NotifySettings().WEBHOOK_DISABLE_AFTER_S) == timedelta(days=5)
