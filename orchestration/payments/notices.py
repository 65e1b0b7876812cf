"""What a user sees of a payment on `/me/events`: a `payment` event and the new balance (after commit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from ledger.amounts import credits_text
from orchestration.jobs import balances, progress
from orchestration.payments.books import Applied
from orchestration.services import Services


def after_commit(
    services: Services, user_id: str, order_ids: Sequence[str], applied: Sequence[Applied]
) -> None:
    """Publish a `payment` event per order whose status or credits changed, then the balance once."""
    moved = False
    for order_id, outcome in zip(order_ids, applied, strict=True):
        if outcome.noop:
            continue  # a replay: nothing new to tell
        progress.publish_user_event(
            services.redis,
            user_id,
            "payment",
            order_id=order_id,
            status=outcome.status,
            credits=credits_text(outcome.credits),
        )
        moved = moved or bool(outcome.credits)
    if moved:
        balances.notify_balance(services, user_id)


def tell(services: Services, user_id: str, kind: str, **fields: object) -> None:
    """A payment notification that is not a balance change (auto top-up turned off, ...)."""
    progress.publish_user_event(services.redis, user_id, kind, **fields)


def refilled(services: Services, user_id: str, refills: Sequence[tuple[Row[Any], Applied]]) -> None:
    """An `auto_top_up` event per refill just credited: which order, the credits, what the card paid."""
    for order, outcome in refills:
        if order.purpose != "auto_top_up" or outcome.noop or outcome.credits <= 0:
            continue
        progress.publish_user_event(
            services.redis,
            user_id,
            "auto_top_up",
            order_id=order.id,
            status=outcome.status,
            credits=credits_text(outcome.credits),
            amount=str(order.amount),
            currency=order.currency,
        )
