"""Crypto transfers an operator must look at (README "Payments", crypto): each is recorded with why, counted
by the `creditflow_crypto_transfers_to_review{reason}` gauge (their intents by
`creditflow_crypto_intents_to_review`), and stays listed until marked reviewed (`creditflow crypto review`).

Reasons:
- `other-asset`: another allow-listed token, the native coin of a token intent, or another chain, sent to
  an intent's address: not credited (the intent's price is in its own asset); returned or granted by hand.
- `excess`: the part of the payments beyond the price (an overpayment, or a second payment to an intent
  already credited): not credited again; returned by hand.
- `underpaid`: the transfers of an intent that expired short of its price: returned by hand (cleared if
  the rest arrives within the late-payment window and the intent is credited).
- `late`: a full payment whose block came after the late-payment window: returned by hand.
- `reorged`: a transfer an intent was credited on whose block is no longer canonical (a reorg deeper than
  the confirmations): the credit stays, the order is flagged, the operator decides (a refund takes it back).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, update

from orchestration.payments.books import TAKEN
from orchestration.payments.crypto.intents import counts
from orchestration.payments.tables import crypto_transfers
from orchestration.payments.units import plain_unit
from orchestration.services import Services

REASONS = ("other-asset", "excess", "underpaid", "late", "reorged")
# Listed: flagged, not reviewed, and either final (confirmed) or a credited payment a reorg took away.
LISTED = and_(
    crypto_transfers.c.review.is_not(None),
    crypto_transfers.c.reviewed_at.is_(None),
    or_(crypto_transfers.c.status == "confirmed", crypto_transfers.c.review == "reorged"),
)


def _flag(connection: Connection, ids: Iterable[int], reason: str | None, now: datetime) -> None:
    ids = list(ids)
    if ids:
        connection.execute(
            update(crypto_transfers)
            .where(crypto_transfers.c.id.in_(ids))
            .values(review=reason, updated_at=now)
        )


def mark(
    connection: Connection, order: Row[Any], rows: list[Row[Any]], *, too_late: bool, now: datetime
) -> None:
    """Flag the intent's confirmed transfers under the written policies, given the order as settled."""
    price, status = int(order.amount), order.status
    _flag(
        connection,
        [
            r.id
            for r in rows
            if not counts(order, r.chain_id, r.token_address) and r.review is None and r.status == "confirmed"
        ],
        "other-asset",
        now,
    )
    mine = sorted(
        (r for r in rows if r.status == "confirmed" and counts(order, r.chain_id, r.token_address)),
        key=lambda r: (r.block_number, r.log_index),
    )
    total, beyond = 0, []
    for row in mine:
        total += int(row.amount)
        if total > price:
            beyond.append(row)
    if status in TAKEN:
        _flag(connection, [r.id for r in beyond if r.review is None], "excess", now)
        _flag(connection, [r.id for r in mine if r.review == "underpaid"], None, now)
    elif status == "expired" and (too_late or total < price):
        reason = "late" if too_late else "underpaid"
        _flag(connection, [r.id for r in mine if r.review is None], reason, now)


def to_review(services: Services) -> dict[str, int]:
    """How many transfers wait for an operator, by reason (the metric)."""
    query = select(crypto_transfers.c.review, func.count()).where(LISTED).group_by(crypto_transfers.c.review)
    with services.uow(autocommit=True) as connection:
        found = {str(reason): int(count) for reason, count in connection.execute(query)}
    return {reason: found.get(reason, 0) for reason in REASONS}


def intents_to_review(services: Services) -> int:
    """How many intents have a transfer waiting for an operator (the metric)."""
    query = select(func.count(func.distinct(crypto_transfers.c.order_id))).where(LISTED)
    with services.uow(autocommit=True) as connection:
        return int(connection.execute(query).scalar_one())


def listed(services: Services) -> list[dict[str, Any]]:
    """The transfers waiting for an operator, oldest first."""
    with plain_unit(services) as connection:
        rows = connection.execute(select(crypto_transfers).where(LISTED).order_by(crypto_transfers.c.id))
        return [dict(row._mapping) for row in rows]


def reviewed(services: Services, transfer_id: int, now: datetime) -> bool:
    """An operator dealt with a listed transfer (refunded it by hand, granted it...): unlist it."""
    with plain_unit(services) as connection:
        done = connection.execute(
            update(crypto_transfers)
            .where(crypto_transfers.c.id == transfer_id, crypto_transfers.c.review.is_not(None))
            .values(reviewed_at=now, updated_at=now)
        ).rowcount
    return bool(done)
