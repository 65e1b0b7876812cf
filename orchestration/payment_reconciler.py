"""The reconciler (beat, `maintenance`): re-asks the providers about every order still pending, so a
lost or failed webhook heals itself, re-sends events whose processing was lost, and expires orders
nobody paid. Crypto intents are rescanned on their chains by the crypto scanner."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from orchestration import payment_events, payments_paypal, payments_stripe
from orchestration.bootstrap import Services
from orchestration.payment_tables import orders
from orchestration.payment_units import plain_unit
from payments.facts import ProviderError

log = logging.getLogger(__name__)
BATCH = 200
STUCK_EVENT_AFTER_S = 60
RECONCILERS = {"stripe": payments_stripe.reconcile, "paypal": payments_paypal.reconcile}


@dataclass
class Reconciled:
    """What one pass found, per outcome ("paid", "pending", "expired", "error", ...)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    resent_events: int = 0
    expired: int = 0


def sweep(services: Services, *, now: datetime | None = None) -> Reconciled:
    """One pass over pending card and wallet orders older than RECONCILE_MIN_AGE_S."""
    now = now or datetime.now(UTC)
    result = Reconciled(resent_events=payment_events.resend_stuck(services, older_than_s=STUCK_EVENT_AFTER_S))
    cutoff = now - timedelta(seconds=services.settings.RECONCILE_MIN_AGE_S)
    for rail, reconcile in RECONCILERS.items():
        if services.settings.payment_rail_missing(rail):
            continue
        with plain_unit(services) as connection:
            pending = list(
                connection.execute(
                    select(orders)
                    .where(
                        orders.c.rail == rail,
                        orders.c.status.in_(("pending", "paid")),
                        orders.c.created_at < cutoff,
                    )
                    .order_by(orders.c.created_at)
                    .limit(BATCH)
                )
            )
        for order in pending:
            overdue = _aware(order.expires_at) <= now
            try:
                outcome = reconcile(services, order, overdue=overdue)
            except ProviderError as exc:
                log.warning("reconciling order %s failed: %s", order.id, exc)
                outcome = "error"
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            if overdue and outcome in ("pending", "no session", "no order"):
                result.expired += _expire(services, order.id, now)
    return result


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _expire(services: Services, order_id: str, now: datetime) -> int:
    with plain_unit(services) as connection:
        return connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "pending")
            .values(status="expired", failure="nobody paid it in time", updated_at=now)
        ).rowcount
