"""Cards saved for auto top-up: only from a Checkout the user started with `save_card` and paid as their
own Stripe customer (one we created for them, its metadata naming them), never from any paid Checkout."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from ledger.idempotency import upsert_ignore
from orchestration.payments import gateways
from orchestration.payments.tables import auto_top_ups
from orchestration.payments.units import plain_unit
from orchestration.services import Services

log = logging.getLogger(__name__)


def _settings(connection: Connection, user_id: str) -> Row[Any] | None:
    return connection.execute(select(auto_top_ups).where(auto_top_ups.c.user_id == user_id)).first()


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value  # an expandable Stripe field


def customer_for(services: Services, user_id: str) -> str:
    """The user's own Stripe customer, created once, for a `save_card` Checkout."""
    with plain_unit(services) as connection:
        found = _settings(connection, user_id)
    if found is not None and found.customer_ref:
        return str(found.customer_ref)
    customer = str(gateways.stripe(services).create_customer(user_id=user_id)["id"])
    now = datetime.now(UTC)
    with plain_unit(services) as connection:
        connection.execute(
            upsert_ignore(connection, auto_top_ups).values(
                user_id=user_id, enabled=False, threshold=0, pack_id="", max_per_month=1, updated_at=now
            )
        )
        connection.execute(  # a concurrent first Checkout may have kept its customer: that one stays
            update(auto_top_ups)
            .where(auto_top_ups.c.user_id == user_id, auto_top_ups.c.customer_ref.is_(None))
            .values(customer_ref=customer, updated_at=now)
        )
        kept = _settings(connection, user_id)
    assert kept is not None
    return str(kept.customer_ref)


def remember_card(services: Services, *, user_id: str, customer_ref: str, payment_ref: str | None) -> None:
    """Keep the card of a Checkout the user started with `save_card` and paid as their own customer."""
    with plain_unit(services) as connection:
        found = _settings(connection, user_id)
    owner = found.customer_ref if found is not None else None
    if not payment_ref or not owner or customer_ref != owner:
        return  # any other paid Checkout (a guest's customer, someone else's) leaves no card
    intent = gateways.stripe(services).payment_intent(payment_ref)
    metadata = intent.get("metadata") or {}
    ours = metadata.get("save_card") == "true" and metadata.get("user_id") == user_id
    if not ours or _id(intent.get("customer")) != owner:
        log.warning("payment %s: its card is not kept (not a save_card Checkout of the user's)", payment_ref)
        return
    method = _id(intent.get("payment_method"))
    if not method:
        return
    with plain_unit(services) as connection:
        connection.execute(
            update(auto_top_ups)
            .where(auto_top_ups.c.user_id == user_id, auto_top_ups.c.customer_ref == owner)
            .values(payment_method_ref=method, updated_at=datetime.now(UTC))
        )
