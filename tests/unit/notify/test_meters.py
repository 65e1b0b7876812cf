"""The webhook delivery meter counts each attempt's outcome in the process's registry."""

from __future__ import annotations

from prometheus_client import REGISTRY

from orchestration.notify import meters


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("creditflow_webhook_deliveries_total", {"outcome": outcome}) or 0.0


def test_each_outcome_is_counted_and_an_unknown_one_is_a_failure() -> None:
    before = {outcome: _count(outcome) for outcome in meters.OUTCOMES}
    meters.delivery("succeeded")
    meters.delivery("pending")
    meters.delivery("pending")
    meters.delivery("something else")
    assert _count("succeeded") == before["succeeded"] + 1
    assert _count("pending") == before["pending"] + 2
    assert _count("failed") == before["failed"] + 1
    assert _count("canceled") == before["canceled"]
