"""Provider events as PaymentFacts, and the auto top-up limits: pure logic, no services."""

from __future__ import annotations

import pytest

from orchestration.errors import PaymentRefused
from orchestration.payments.refill_limits import checked
from payments import paypal_events, stripe_events
from payments.facts import PaymentFact
from runtime.packs import CreditPack, FiatPrice

PACK = CreditPack(id="p", credits=1000, name="1000", stripe=FiatPrice(amount=2400, currency="USD"))


def _stripe(kind: str, obj: dict[str, object]) -> list[PaymentFact]:
    return list(stripe_events.event_facts({"type": kind, "data": {"object": obj}}))


def test_only_a_failed_refund_is_a_fact() -> None:
    refund = {"id": "re_1", "amount": 1200, "currency": "usd", "payment_intent": "pi_1"}
    assert _stripe("charge.refund.updated", {**refund, "status": "succeeded"}) == []
    failed = {**refund, "status": "failed", "failure_reason": "lost_or_stolen_card"}
    (fact,) = _stripe("refund.failed", failed)
    assert (fact.kind, fact.key, fact.amount, fact.payment_ref) == ("refund_failed", "re_1", 1200, "pi_1")


def test_dispute_events_and_fraud_warnings_name_the_payment() -> None:
    dispute = {"id": "du_1", "amount": 2400, "currency": "usd", "payment_intent": "pi_1"}
    kinds = [_stripe(k, dispute)[0].kind for k in ("charge.dispute.created", "charge.dispute.closed")]
    assert kinds == ["dispute_opened", "dispute_closed"]
    (warning,) = _stripe("radar.early_fraud_warning.created", {"id": "issfr_1", "payment_intent": "pi_1"})
    assert (warning.kind, warning.payment_ref, warning.detail) == ("fraud_warning", "pi_1", "unknown")


@pytest.mark.parametrize(
    ("status", "outcome", "kind"),
    [
        ("WAITING_FOR_SELLER_RESPONSE", None, "dispute_opened"),
        ("RESOLVED", "RESOLVED_SELLER_FAVOUR", "dispute_won"),
        ("RESOLVED", "RESOLVED_BUYER_FAVOUR", "dispute_closed"),
    ],
)
def test_a_paypal_dispute_is_open_won_or_closed(status: str, outcome: str | None, kind: str) -> None:
    dispute = {
        "dispute_id": "PP-D-1",
        "status": status,
        "dispute_amount": {"currency_code": "USD", "value": "24.00"},
        "disputed_transactions": [{"seller_transaction_id": "CAP1"}],
        **({"dispute_outcome": {"outcome_code": outcome}} if outcome else {}),
    }
    (fact,) = paypal_events.facts("CUSTOMER.DISPUTE.UPDATED", {"resource": dispute})
    assert (fact.kind, fact.payment_ref, fact.amount, fact.key) == (kind, "CAP1", 2400, "PP-D-1")


def test_the_limits_of_auto_top_up() -> None:
    assert checked(PACK, threshold=999_000_000, max_per_month=3, max_amount_per_month=None) == 7200
    assert checked(PACK, threshold=0, max_per_month=3, max_amount_per_month=2400) == 2400
    for threshold, cap in ((1000_000_000, None), (0, 2399), (0, 10**18)):
        with pytest.raises(PaymentRefused) as refused:
            checked(PACK, threshold=threshold, max_per_month=3, max_amount_per_month=cap)
        assert refused.value.status == 422
