"""Orders: one row per payment attempt, what it should cost, and how it stands."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Row, and_, func, or_, select, update

from orchestration.errors import PaymentRefused
from orchestration.payments.tables import orders
from orchestration.payments.units import money_unit, plain_unit
from orchestration.services import Services
from payments.facts import ProviderError
from runtime.packs import CreditPack, FiatPrice

MICRO = 1_000_000
# Top-ups (card and wallet checkouts, paid or not) a user may start per window: a person buys a few packs,
# a card-testing script or a runaway client starts dozens.
VELOCITY = ((timedelta(hours=1), 10), (timedelta(days=1), 30))


@dataclass(frozen=True)
class NewOrder:
    """What a new order expects: `amount` in the rail's minor units (cents, wei, token units)."""

    user_id: str
    pack: CreditPack
    rail: str
    amount: int
    currency: str
    expires_at: datetime
    purpose: str = "checkout"
    chain_id: int | None = None
    token_address: str | None = None


def new_order_id() -> str:
    """A fresh opaque order id."""
    return "ord_" + secrets.token_hex(12)


def pack_or_refuse(services: Services, pack_id: str, rail: str) -> CreditPack:
    """The pack, if it is sold on this rail; PaymentRefused (422) otherwise."""
    pack = services.settings.pack(pack_id)
    if pack is None:
        raise PaymentRefused(f"No credit pack {pack_id!r}.", kind="unknown-pack")
    if rail in ("stripe", "paypal") and getattr(pack, rail) is None:
        raise PaymentRefused(f"Pack {pack_id!r} is not sold through {rail}.", kind="pack-not-on-rail")
    return pack


def fiat_price(
    services: Services, pack_id: str, rail: Literal["stripe", "paypal"]
) -> tuple[CreditPack, FiatPrice]:
    """The pack and its price on a card/wallet rail; PaymentRefused (422) if it is not sold there."""
    pack = pack_or_refuse(services, pack_id, rail)
    price = pack.stripe if rail == "stripe" else pack.paypal
    assert price is not None  # pack_or_refuse refused a pack without one
    return pack, price


def start_provider_order(
    services: Services,
    *,
    user_id: str,
    pack: CreditPack,
    rail: str,
    create: Callable[[Row[Any]], dict[str, Any]],
) -> tuple[Row[Any], dict[str, Any]]:
    """Insert a pending card/wallet order, create it at the provider (`create(order)` answers the provider's
    object, with its `id`), and remember that id; a failed provider call fails the order and re-raises."""
    price = getattr(pack, rail)
    now = datetime.now(UTC)
    order = NewOrder(
        user_id,
        pack,
        rail,
        price.amount,
        price.currency,
        expires_at=now + timedelta(seconds=services.settings.PAYMENT_ORDER_TTL_S),
    )
    with money_unit(services, user_id) as connection:  # the account lock: two requests count in turn
        _within_velocity(connection, user_id, now)
        row = insert_order(connection, order, now=now)
    try:
        answer = create(row)
    except ProviderError as exc:
        fail_order(services, row.id, str(exc), datetime.now(UTC))
        raise
    with plain_unit(services) as connection:
        attach_provider_ref(connection, row.id, str(answer["id"]), datetime.now(UTC))
    return row, answer


def count_orders(connection: Connection, user_id: str, purpose: str, *conditions: Any) -> int:
    """How many of the user's orders of one purpose meet `conditions`."""
    statement = select(func.count()).select_from(orders)
    return int(
        connection.execute(
            statement.where(orders.c.user_id == user_id, orders.c.purpose == purpose, *conditions)
        ).scalar_one()
    )


def _within_velocity(connection: Connection, user_id: str, now: datetime) -> None:
    """Refuse (429) a top-up past the user's VELOCITY limits: card testing and runaway clients start many."""
    for window, most in VELOCITY:
        started = count_orders(connection, user_id, "checkout", orders.c.created_at >= now - window)
        if started >= most:
            raise PaymentRefused(
                f"At most {most} top-ups may be started in {window}; try again later.",
                kind="top-up-velocity",
                status=429,
            )


def insert_order(connection: Connection, order: NewOrder, *, now: datetime, **extra: Any) -> Row[Any]:
    """Insert a pending order; `extra` sets more columns (deposit address, provider ref)."""
    values = {
        "id": new_order_id(),
        "user_id": order.user_id,
        "pack_id": order.pack.id,
        "rail": order.rail,
        "purpose": order.purpose,
        "credits": order.pack.credits * MICRO,
        "amount": str(order.amount),
        "currency": order.currency,
        "chain_id": order.chain_id,
        "token_address": order.token_address,
        "status": "pending",
        "expires_at": order.expires_at,
        "created_at": now,
        "updated_at": now,
        **extra,
    }
    return connection.execute(orders.insert().values(**values).returning(*orders.c)).one()


def attach_provider_ref(connection: Connection, order_id: str, provider_ref: str, now: datetime) -> None:
    """Remember the provider's id of the order (Checkout Session, PayPal order) once it exists."""
    connection.execute(
        update(orders)
        .where(orders.c.id == order_id, orders.c.provider_ref.is_(None))
        .values(provider_ref=provider_ref, updated_at=now)
    )


def fail_order(services: Services, order_id: str, reason: str, now: datetime) -> None:
    """End an order that never reached the provider (its creation call failed)."""
    with plain_unit(services) as connection:
        connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "pending")
            .values(status="failed", failure=reason[:200], updated_at=now)
        )


def get_order(connection: Connection, order_id: str, *, lock: bool = False) -> Row[Any] | None:
    """One order (locked FOR UPDATE when `lock`: take the user's account first)."""
    statement = select(orders).where(orders.c.id == order_id)
    return connection.execute(statement.with_for_update() if lock else statement).first()


def find_order(
    connection: Connection, rail: str, *, payment_ref: str | None, provider_ref: str | None
) -> Row[Any] | None:
    """The order a provider id belongs to (its payment, or the provider's order/session)."""
    conditions = []
    if payment_ref:
        conditions.append(orders.c.payment_ref == payment_ref)
    if provider_ref:
        conditions.append(orders.c.provider_ref == provider_ref)
    if not conditions:
        return None
    return connection.execute(select(orders).where(orders.c.rail == rail, or_(*conditions))).first()


def own_order(services: Services, *, user_id: str, order_id: str) -> Row[Any] | None:
    """The user's order, or None (someone else's order is as unknown as a missing one)."""
    with plain_unit(services) as connection:
        found = get_order(connection, order_id)
    return found if found is not None and found.user_id == user_id else None


def list_orders(
    services: Services,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
    user_id: str | None = None,
    rail: str | None = None,
    status: str | None = None,
) -> list[Row[Any]]:
    """Orders newest first (a user's own, or all of them for admins), filtered."""
    statement = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    if user_id is not None:
        statement = statement.where(orders.c.user_id == user_id)
    if rail is not None:
        statement = statement.where(orders.c.rail == rail)
    if status is not None:
        statement = statement.where(orders.c.status == status)
    if before is not None:
        at, last_id = before
        statement = statement.where(
            or_(orders.c.created_at < at, and_(orders.c.created_at == at, orders.c.id < last_id))
        )
    with plain_unit(services) as connection:
        return list(connection.execute(statement))


def order_view(row: Row[Any]) -> dict[str, Any]:
    """An order as the API shows it; provider amounts as decimal text (wei overflow JSON numbers)."""
    return {
        "id": row.id,
        "rail": row.rail,
        "pack_id": row.pack_id,
        "purpose": row.purpose,
        "status": row.status,
        "credits": row.credits,
        "credited": row.credited - row.clawed_back,
        "amount": row.amount,
        "currency": row.currency,
        "amount_received": row.amount_received,
        "amount_refunded": row.amount_refunded,
        "chain_id": row.chain_id,
        "deposit_address": row.deposit_address,
        "provider_ref": row.provider_ref,
        "payment_ref": row.payment_ref,
        "failure": row.failure,
        "user_id": row.user_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "expires_at": row.expires_at,
        "credited_at": row.credited_at,
    }
