"""The limits of auto top-up: a threshold a refill lifts the balance above, and per calendar month (UTC)
at most `max_per_month` refills costing at most `max_amount_per_month` (the pack's currency's minor
units; by default the pack's price times `max_per_month`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from orchestration.errors import PaymentRefused
from orchestration.payments.orders import MICRO
from orchestration.payments.tables import orders
from runtime.packs import CreditPack

MAX_AMOUNT_DIGITS = 18  # a money cap fits a BIGINT-sized integer; text keeps it exact everywhere


def checked(
    pack: CreditPack, *, threshold: int, max_per_month: int, max_amount_per_month: int | None
) -> int:
    """The month's money cap for these settings; PaymentRefused (422) for settings no refill can meet."""
    assert pack.stripe is not None
    if threshold >= pack.credits * MICRO:
        raise PaymentRefused(
            f"The threshold must be below the {pack.credits} credits of pack {pack.id!r}: a refill must lift "
            "the balance above it.",
            kind="threshold-above-pack",
        )
    cap = pack.stripe.amount * max_per_month if max_amount_per_month is None else max_amount_per_month
    if cap < pack.stripe.amount or len(str(cap)) > MAX_AMOUNT_DIGITS:
        raise PaymentRefused(
            f"max_amount_per_month must be at least one refill ({pack.stripe.amount} {pack.stripe.currency}"
            f" minor units) and at most {MAX_AMOUNT_DIGITS} digits.",
            kind="cap-below-one-refill",
        )
    return cap


def month_cap(settings: Row[Any], pack: CreditPack) -> int:
    """The money cap a user's settings give (settings saved before the cap existed: price x count)."""
    assert pack.stripe is not None
    if settings.max_amount_per_month is None:
        return pack.stripe.amount * int(settings.max_per_month)
    return int(settings.max_amount_per_month)


def month_allows(
    connection: Connection, settings: Row[Any], pack: CreditPack, *, since: datetime
) -> bool:
    """Whether one more refill of `pack` stays within this month's count and money caps."""
    assert pack.stripe is not None
    spent = list(
        connection.execute(
            select(orders.c.amount, orders.c.currency).where(
                orders.c.user_id == settings.user_id,
                orders.c.purpose == "auto_top_up",
                orders.c.created_at >= since,
                orders.c.status != "failed",
            )
        )
    )
    if len(spent) >= settings.max_per_month:
        return False
    # Refills in another currency (the pack was changed mid-month) count against the count cap only.
    same = sum(int(row.amount) for row in spent if row.currency.upper() == pack.stripe.currency.upper())
    return same + pack.stripe.amount <= month_cap(settings, pack)
