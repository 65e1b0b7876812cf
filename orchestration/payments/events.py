"""Provider events: recorded once (UNIQUE (rail, provider event id)), then applied on `critical`.

A webhook only verifies, records and enqueues, so it answers fast and 2xx only once the event is
durable. Applying an event marks it processed in the same transaction as its ledger entries: an attempt
that failed leaves it `received`, so the retry (or the reconciler) applies it again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update

from ledger.idempotency import upsert_ignore
from orchestration.payments import gateways, notices, saved_cards
from orchestration.payments.books import Applied
from orchestration.payments.fulfilment import apply_fact
from orchestration.payments.orders import find_order, get_order
from orchestration.payments.tables import events
from orchestration.payments.units import money_unit, plain_unit, send_task
from orchestration.services import Services
from payments import paypal_events, stripe_events
from payments.facts import PaymentFact

log = logging.getLogger(__name__)
PROCESS_TASK = "creditflow.critical.process_payment_event"
# Failed attempts after which an event waits for an operator (its task is in the dead letters).
MAX_ATTEMPTS = 30


@dataclass(frozen=True)
class Recorded:
    """An event as recorded: its row id, and whether it still waits to be applied."""

    id: int
    pending: bool
    new: bool


def _now() -> datetime:
    return datetime.now(UTC)


def record(
    services: Services, *, rail: str, event_id: str, type_: str, payload: str, order_id: str | None = None
) -> Recorded:
    """Store an event once; a redelivery finds the first row."""
    with plain_unit(services) as connection:
        inserted = connection.execute(
            upsert_ignore(connection, events)
            .values(
                rail=rail,
                provider_event_id=event_id[:200],
                type=type_[:80],
                payload=payload,
                order_id=order_id,
                status="received",
                received_at=_now(),
            )
            .returning(events.c.id)
        ).first()
        if inserted is not None:
            return Recorded(int(inserted.id), True, True)
        row = connection.execute(
            select(events.c.id, events.c.status).where(
                events.c.rail == rail, events.c.provider_event_id == event_id[:200]
            )
        ).one()
    return Recorded(int(row.id), row.status == "received", False)


def record_and_enqueue(services: Services, **event: Any) -> Recorded:
    """Record an event, then (after the commit) ask `critical` to apply it if it still waits."""
    recorded = record(services, **event)
    if recorded.pending:
        send_task(services, PROCESS_TASK, recorded.id)
    return recorded


def feed(services: Services, order: Row[Any], *, event_id: str, type_: str, body: dict[str, Any]) -> Recorded:
    """Record what we asked the order's provider ourselves (a capture, a look-up, a refund) as one of the
    order's events, applied on `critical` like a webhook's."""
    return record_and_enqueue(
        services, rail=order.rail, event_id=event_id, type_=type_, payload=json.dumps(body), order_id=order.id
    )


def _facts(row: Row[Any]) -> list[PaymentFact]:
    body = json.loads(row.payload)
    if row.rail == "stripe":
        if row.type == "lookup.checkout_session":
            return [stripe_events.session_fact(body)]
        if row.type == "lookup.payment_intent":
            return [stripe_events.intent_fact(body)]
        return stripe_events.event_facts(body)
    if row.rail == "paypal":
        return paypal_events.facts(row.type, body)
    return []


def _order_for(services: Services, rail: str, fact: PaymentFact) -> Row[Any] | None:
    with plain_unit(services) as connection:
        found = get_order(connection, fact.order_id) if fact.order_id else None
        if found is None or found.rail != rail:
            found = find_order(connection, rail, payment_ref=fact.payment_ref, provider_ref=fact.provider_ref)
    if found is None and rail == "stripe" and fact.payment_ref:
        # A refund or dispute about a payment we have not fulfilled yet: its PaymentIntent names the order
        # (asked outside any transaction: no row waits on the network).
        intent = gateways.stripe(services).payment_intent(fact.payment_ref)
        order_id = (intent.get("metadata") or {}).get("order_id")
        if order_id:
            with plain_unit(services) as connection:
                found = get_order(connection, order_id)
    return found if found is not None and found.rail == rail else None


def process(services: Services, event_row_id: int) -> list[Applied]:
    """Apply a recorded event to its order and the ledger, exactly once."""
    with plain_unit(services) as connection:
        row = connection.execute(select(events).where(events.c.id == event_row_id)).first()
        if row is None or row.status != "received":
            return []
    facts = _facts(row)
    orders_found = [_order_for(services, row.rail, fact) for fact in facts]
    targets = [(fact, order) for fact, order in zip(facts, orders_found, strict=True) if order is not None]
    if not targets:
        _finish(services, event_row_id, "ignored", None, "no fact about one of our orders")
        return []
    user_id = targets[0][1].user_id
    applied: list[Applied] = []
    with money_unit(services, user_id) as connection:
        still = connection.execute(
            select(events.c.status).where(events.c.id == event_row_id).with_for_update()
        ).scalar_one()
        if still != "received":
            return []  # a concurrent delivery applied it while we looked
        for fact, order in targets:
            locked = get_order(connection, order.id, lock=True)
            assert locked is not None
            applied.append(apply_fact(connection, locked, fact, _now()))
        connection.execute(
            update(events)
            .where(events.c.id == event_row_id)
            .values(
                status="processed",
                processed_at=_now(),
                order_id=targets[0][1].id,
                attempts=events.c.attempts + 1,
            )
        )
    notices.after_commit(services, user_id, [order.id for _f, order in targets], applied)
    orders_applied = [(order, outcome) for (_f, order), outcome in zip(targets, applied, strict=True)]
    notices.refilled(services, user_id, orders_applied)
    _remember_cards(services, user_id, targets, applied)
    return applied


def _remember_cards(
    services: Services, user_id: str, targets: list[tuple[PaymentFact, Row[Any]]], applied: list[Applied]
) -> None:
    """A Checkout paid with `save_card` by the user's own Stripe customer leaves the card for auto top-up."""
    for (fact, order), outcome in zip(targets, applied, strict=True):
        if fact.kind == "paid" and fact.customer_ref and order.purpose == "checkout" and outcome.credits > 0:
            try:
                saved_cards.remember_card(
                    services, user_id=user_id, customer_ref=fact.customer_ref, payment_ref=fact.payment_ref
                )
            except Exception:  # the credit is committed; the card can be saved on the next purchase
                log.exception("could not remember the card of order %s", order.id)


def _finish(services: Services, event_row_id: int, status: str, order_id: str | None, note: str) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(events)
            .where(events.c.id == event_row_id, events.c.status == "received")
            .values(
                status=status,
                processed_at=_now(),
                order_id=order_id,
                error=note,
                attempts=events.c.attempts + 1,
            )
        )


def note_failure(services: Services, event_row_id: int, error: str) -> None:
    """Count a failed attempt (the event stays `received` for the next try)."""
    with plain_unit(services) as connection:
        connection.execute(
            update(events)
            .where(events.c.id == event_row_id)
            .values(attempts=events.c.attempts + 1, error=error[:2000])
        )


def resend_stuck(services: Services, *, older_than_s: int, limit: int = 200) -> int:
    """Enqueue again events still `received` after a while (their enqueue or every retry was lost)."""
    cutoff = _now() - timedelta(seconds=older_than_s)
    with plain_unit(services) as connection:
        ids = list(
            connection.execute(
                select(events.c.id)
                .where(
                    events.c.status == "received",
                    events.c.received_at < cutoff,
                    events.c.attempts < MAX_ATTEMPTS,
                )
                .order_by(events.c.received_at)
                .limit(limit)
            ).scalars()
        )
    for event_row_id in ids:
        send_task(services, PROCESS_TASK, event_row_id)
    return len(ids)


def stuck(services: Services) -> int:
    """Events still unapplied at their last attempt: they wait for an operator (and the dead letters)."""
    with plain_unit(services) as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.status == "received", events.c.attempts >= MAX_ATTEMPTS)
            ).scalar_one()
        )
