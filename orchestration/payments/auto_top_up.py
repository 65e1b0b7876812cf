"""Auto top-up (opt-in, Stripe): a saved card charged off-session for a chosen pack when the balance falls
below the user's threshold; at most `max_per_month` a calendar month (UTC). SCA (`requires_action`)
turns it off with a notification, and so do AUTO_TOP_UP_MAX_FAILURES failed charges in a row. A refill
is a purchase: it only ever adds credits (repaying debt first), never sets a balance."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from ledger.tables import accounts
from orchestration.errors import PaymentRefused
from orchestration.payments import gateways, notices
from orchestration.payments import refill_limits as limits
from orchestration.payments.orders import (
    NewOrder,
    attach_provider_ref,
    count_orders,
    insert_order,
    pack_or_refuse,
)
from orchestration.payments.refill_recovery import UNANSWERED_TTL, charge_params, record_intent
from orchestration.payments.tables import auto_top_ups, orders
from orchestration.payments.units import money_unit, plain_unit, send_task
from orchestration.services import Services
from payments.facts import ProviderError

log = logging.getLogger(__name__)
CHARGE_TASK = "creditflow.critical.auto_top_up"


def _now() -> datetime:
    return datetime.now(UTC)


def _row(connection: Connection, user_id: str, *, lock: bool = False) -> Row[Any] | None:
    statement = select(auto_top_ups).where(auto_top_ups.c.user_id == user_id)
    return connection.execute(statement.with_for_update() if lock else statement).first()


def view(row: Row[Any] | None, services: Services) -> dict[str, Any]:
    """The settings as the API shows them (the money cap in the pack's currency's minor units)."""
    if row is None:
        return {
            "enabled": False,
            "threshold": 0,
            "pack_id": "",
            "max_per_month": 1,
            "max_amount_per_month": None,
            "currency": None,
            "failures": 0,
            "disabled_reason": None,
            "has_payment_method": False,
        }
    pack = services.settings.pack(row.pack_id) if row.pack_id else None
    price = pack.stripe if pack is not None else None
    return {
        "enabled": row.enabled,
        "threshold": row.threshold,
        "pack_id": row.pack_id or None,
        "max_per_month": row.max_per_month,
        "max_amount_per_month": str(limits.month_cap(row, pack)) if pack and price else None,
        "currency": price.currency if price else None,
        "failures": row.failures,
        "disabled_reason": row.disabled_reason,
        "has_payment_method": bool(row.payment_method_ref),
    }


def get(services: Services, user_id: str) -> dict[str, Any]:
    """The user's auto top-up settings."""
    with plain_unit(services) as connection:
        return view(_row(connection, user_id), services)


def configure(
    services: Services,
    *,
    user_id: str,
    enabled: bool,
    threshold: int,
    pack_id: str,
    max_per_month: int,
    max_amount_per_month: int | None = None,
) -> dict[str, Any]:
    """Turn auto top-up on or off; on needs a card saved by an earlier Checkout with `save_card`."""
    gateways.stripe(services)
    pack = pack_or_refuse(services, pack_id, "stripe")
    cap = limits.checked(
        pack, threshold=threshold, max_per_month=max_per_month, max_amount_per_month=max_amount_per_month
    )
    values = {
        "enabled": enabled,
        "threshold": threshold,
        "pack_id": pack_id,
        "max_per_month": max_per_month,
        "max_amount_per_month": str(cap),
        "updated_at": _now(),
        "failures": 0,
        "disabled_reason": None,
    }
    with plain_unit(services) as connection:
        found = _row(connection, user_id, lock=True)
        if enabled and (found is None or not found.payment_method_ref):
            raise PaymentRefused(
                "Auto top-up needs a saved card: buy a pack with Stripe and `save_card` first.",
                kind="no-saved-card",
                status=409,
            )
        if found is None:
            connection.execute(auto_top_ups.insert().values(user_id=user_id, **values))
        else:
            connection.execute(update(auto_top_ups).where(auto_top_ups.c.user_id == user_id).values(**values))
        return view(_row(connection, user_id), services)


def sweep(services: Services) -> int:
    """Ask `critical` to refill every enabled user whose available balance is below their threshold."""
    if services.settings.payment_rail_missing("stripe"):
        return 0
    with plain_unit(services) as connection:
        due = list(
            connection.execute(
                select(auto_top_ups.c.user_id)
                .join(accounts, accounts.c.user_id == auto_top_ups.c.user_id)
                .where(
                    auto_top_ups.c.enabled.is_(True),
                    auto_top_ups.c.payment_method_ref.is_not(None),
                    accounts.c.posted - accounts.c.held < auto_top_ups.c.threshold,
                )
            ).scalars()
        )
    for user_id in due:
        send_task(services, CHARGE_TASK, user_id)
    return len(due)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _open_order(services: Services, user_id: str) -> tuple[Row[Any], Row[Any]] | None:
    """Under the user's account lock: the refill order to charge, if one is due and allowed."""
    now = _now()
    with money_unit(services, user_id) as connection:
        settings = _row(connection, user_id, lock=True)
        if settings is None or not settings.enabled or not settings.payment_method_ref:
            return None
        balance = connection.execute(
            select(accounts.c.posted - accounts.c.held).where(accounts.c.user_id == user_id)
        ).scalar_one()
        if balance >= settings.threshold:
            return None
        # Any refill still pending (last month's too) may have charged the card: none starts meanwhile.
        pending = count_orders(connection, user_id, "auto_top_up", orders.c.status == "pending")
        pack = pack_or_refuse(services, settings.pack_id, "stripe")
        assert pack.stripe is not None
        if pending or not limits.month_allows(connection, settings, pack, since=_month_start(now)):
            return None
        order = insert_order(
            connection,
            NewOrder(
                user_id,
                pack,
                "stripe",
                pack.stripe.amount,
                pack.stripe.currency,
                expires_at=now + UNANSWERED_TTL,  # a lost answer waits for Stripe's webhook or the reconciler
                purpose="auto_top_up",
            ),
            now=now,
            customer_ref=settings.customer_ref,
        )
        return order, settings


def charge(services: Services, user_id: str) -> str:
    """Refill one user if still due: 'charged', 'disabled', 'failed', 'unconfirmed' or 'not due'."""
    opened = _open_order(services, user_id)
    if opened is None:
        return "not due"
    order, settings = opened
    try:
        intent = gateways.stripe(services).charge_saved_card(**charge_params(settings, order))
    except ProviderError as exc:
        return _unanswered(services, order.id, exc)
    if intent.get("status") == "succeeded":
        record_intent(services, order, intent)
        _failures(services, user_id, reset=True)
        return "charged"
    if intent.get("id"):
        with plain_unit(services) as connection:
            attach_provider_ref(connection, order.id, str(intent["id"]), _now())
    code = str((intent.get("last_error") or {}).get("code") or intent.get("status"))
    _end(services, order.id, f"card charge failed: {code}")
    if intent.get("status") == "requires_action" or code == "authentication_required":
        _disable(services, user_id, "the bank asked for authentication (SCA): pay once by hand to go on")
        return "disabled"
    if _failures(services, user_id) >= services.settings.AUTO_TOP_UP_MAX_FAILURES:
        _disable(services, user_id, f"{services.settings.AUTO_TOP_UP_MAX_FAILURES} failed charges in a row")
        return "disabled"
    return "failed"


def _unanswered(services: Services, order_id: str, exc: ProviderError) -> str:
    if exc.retryable:
        # A timeout or a 5xx: Stripe may have charged the card. The order stays pending, so its
        # `payment_intent.succeeded` webhook credits it and no second refill starts meanwhile; the
        # reconciler finds its PaymentIntent again (payment_refill_recovery) if the webhook never comes.
        log.warning("auto top-up %s unconfirmed: %s", order_id, exc)
        return "unconfirmed"
    _end(services, order_id, f"stripe refused: {exc}")
    return "failed"


def _end(services: Services, order_id: str, reason: str) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "pending")
            .values(status="failed", failure=reason[:200], updated_at=_now())
        )


def _failures(services: Services, user_id: str, *, reset: bool = False) -> int:
    with plain_unit(services) as connection:
        count = auto_top_ups.c.failures + 1 if not reset else 0
        return int(
            connection.execute(
                update(auto_top_ups)
                .where(auto_top_ups.c.user_id == user_id)
                .values(failures=count)
                .returning(auto_top_ups.c.failures)
            ).scalar_one()
        )


def _disable(services: Services, user_id: str, reason: str) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(auto_top_ups)
            .where(auto_top_ups.c.user_id == user_id)
            .values(enabled=False, disabled_reason=reason, updated_at=_now())
        )
    notices.tell(services, user_id, "auto_top_up_disabled", reason=reason)
