"""Prometheus gauges of what waits for a payments operator: orders the reconciler parked, provider
events unapplied at their last attempt (README "Payments": alert when either is above 0)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from orchestration.payments import events, reconciler
from orchestration.payments.tables import RAILS
from orchestration.services import Services


class PaymentCollector:
    """What waits for a payments operator, read from the database at scrape (alert when above 0)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Three gauges; a database hiccup skips them rather than failing the scrape."""
        try:
            parked, stuck = reconciler.unresolved(self.services), events.stuck(self.services)
            awaiting = reconciler.awaiting(self.services)
        except SQLAlchemyError:
            return
        waiting = GaugeMetricFamily(
            "creditflow_payment_orders_awaiting_reconciliation",
            "Open orders (pending, paid) older than RECONCILE_MIN_AGE_S: the reconciler still asks",
            labels=["rail"],
        )
        for rail in RAILS:  # every rail, 0 included: an alert on `> 0` and a graph need the series
            waiting.add_metric([rail], float(awaiting.get(rail, 0)))
        yield waiting
        family = GaugeMetricFamily(
            "creditflow_payment_orders_unresolved",
            "Orders the reconciler parked: the provider refused every look-up",
            labels=["rail"],
        )
        for rail in RAILS:
            family.add_metric([rail], float(parked.get(rail, 0)))
        yield family
        yield GaugeMetricFamily(
            "creditflow_payment_events_stuck", "Provider events unapplied at their last attempt", value=stuck
        )
