"""The reconciler (beat, `maintenance`): re-asks the providers about every order still pending, so a
lost or failed webhook heals itself, re-sends events whose processing was lost, and expires orders
nobody paid. Crypto intents are rescanned on their chains by the crypto scanner.

It pages through every open order of a rail (oldest first, by (created_at, id)), so orders that can
never be resolved don't hide newer ones; an order whose look-up the provider refuses for good (a 4xx)
MAX_LOOKUP_FAILURES passes in a row is parked: expired with the reason, logged as an error, counted
by the `creditflow_payment_orders_unresolved` gauge. A late provider event still credits it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update

from orchestration.payments import events, paypal, stripe
from orchestration.payments.tables import OPEN_STATUSES, orders
from orchestration.payments.units import aware, plain_unit
from orchestration.services import Services
from payments.facts import ProviderError

log = logging.getLogger(__name__)
BATCH = 200
STUCK_EVENT_AFTER_S = 60
# Permanent look-up failures in a row before an order is parked (a 4xx does not heal by asking again).
MAX_LOOKUP_FAILURES = 5
PARKED = "parked: the provider refused every look-up"
RECONCILERS = {"stripe": stripe.reconcile, "paypal": paypal.reconcile}


@dataclass
class Reconciled:
    """What one pass found, per outcome ("paid", "pending", "expired", "error", "parked", ...)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    resent_events: int = 0
    expired: int = 0
    parked: int = 0


def _page(
    services: Services, rail: str, cutoff: datetime, after: tuple[datetime, str] | None
) -> list[Row[Any]]:
    """The next BATCH open orders of a rail created before `cutoff`, after the position `after`."""
    statement = (
        select(orders)
        .where(orders.c.rail == rail, orders.c.status.in_(OPEN_STATUSES), orders.c.created_at < cutoff)
        .order_by(orders.c.created_at, orders.c.id)
        .limit(BATCH)
    )
    if after is not None:
        at, last_id = after
        statement = statement.where(
            or_(orders.c.created_at > at, and_(orders.c.created_at == at, orders.c.id > last_id))
        )
    with plain_unit(services) as connection:
        return list(connection.execute(statement))


def sweep(services: Services, *, now: datetime | None = None) -> Reconciled:
    """One pass over every pending card and wallet order older than RECONCILE_MIN_AGE_S."""
    now = now or datetime.now(UTC)
    result = Reconciled(resent_events=events.resend_stuck(services, older_than_s=STUCK_EVENT_AFTER_S))
    cutoff = now - timedelta(seconds=services.settings.RECONCILE_MIN_AGE_S)
    for rail in RECONCILERS:
        if services.settings.payment_rail_missing(rail):
            continue
        after: tuple[datetime, str] | None = None
        while page := _page(services, rail, cutoff, after):
            for order in page:
                outcome = _reconcile_one(services, order, now, result)
                result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            if len(page) < BATCH:
                break
            after = (page[-1].created_at, page[-1].id)
    return result


def _reconcile_one(services: Services, order: Row[Any], now: datetime, result: Reconciled) -> str:
    overdue = aware(order.expires_at) <= now
    try:
        outcome = RECONCILERS[order.rail](services, order, overdue=overdue, now=now)
    except ProviderError as exc:
        log.warning("reconciling order %s failed: %s", order.id, exc)
        if exc.retryable:
            return "error"  # the provider or the network blinked: ask again next pass
        return _failed_for_good(services, order, exc, now, result)
    except Exception:  # one order's surprise must not stop the pass for every order after it
        log.exception("reconciling order %s failed", order.id)
        return "error"
    if order.lookup_failures:
        _set_failures(services, order.id, 0)
    if overdue and outcome in ("pending", "no session", "no order"):
        result.expired += _expire(services, order.id, now, "nobody paid it in time")
    return outcome


def _failed_for_good(
    services: Services, order: Row[Any], exc: ProviderError, now: datetime, result: Reconciled
) -> str:
    failures = int(order.lookup_failures) + 1
    _set_failures(services, order.id, failures)
    if failures < MAX_LOOKUP_FAILURES:
        return "error"
    # An alert: an operator looks at the order (admin list, status=expired, failure "parked: ...").
    log.error(
        "payment order %s (%s) parked after %d refused look-ups: %s", order.id, order.rail, failures, exc
    )
    result.parked += _expire(services, order.id, now, f"{PARKED}: {exc}")
    return "parked"


def _set_failures(services: Services, order_id: str, failures: int) -> None:
    with plain_unit(services) as connection:
        connection.execute(update(orders).where(orders.c.id == order_id).values(lookup_failures=failures))


def unresolved(services: Services) -> dict[str, int]:
    """Parked orders (the reconciler gave up on them) per rail, for the metrics."""
    with plain_unit(services) as connection:
        rows = connection.execute(
            select(orders.c.rail, func.count())
            .where(orders.c.status == "expired", orders.c.lookup_failures >= MAX_LOOKUP_FAILURES)
            .group_by(orders.c.rail)
        )
        return {str(rail): int(count) for rail, count in rows}


def awaiting(services: Services, *, now: datetime | None = None) -> dict[str, int]:
    """Open orders (pending, paid) older than RECONCILE_MIN_AGE_S per rail: what the reconciler still
    has to settle with the provider (ix_payment_orders_open answers it)."""
    before = (now or datetime.now(UTC)) - timedelta(seconds=services.settings.RECONCILE_MIN_AGE_S)
    with plain_unit(services) as connection:
        rows = connection.execute(
            select(orders.c.rail, func.count())
            .where(orders.c.status.in_(OPEN_STATUSES), orders.c.created_at < before)
            .group_by(orders.c.rail)
        )
        return {str(rail): int(count) for rail, count in rows}


def _expire(services: Services, order_id: str, now: datetime, reason: str) -> int:
    with plain_unit(services) as connection:
        return connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "pending")
            .values(status="expired", failure=reason[:200], updated_at=now)
        ).rowcount
