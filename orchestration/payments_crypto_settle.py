"""Crediting crypto intents, and the chain scanner.

Written policies (README "Payments"), each mapped to ledger entries:
- A transfer counts once its block is the chain's configured confirmations deep and still canonical;
  one that a reorg removed before that is `orphaned` and counts for nothing (the intent is unpaid again).
- Underpayment: not credited. The intent waits for the rest until it expires; what arrived is shown in
  `amount_received` and is returned by hand. No entry.
- Exact payment, or several payments to one intent adding up to the amount: one `purchase` of the pack,
  keyed by the intent's deposit address, so it is credited once however many transfers paid it.
- Overpayment (one transfer or several): the pack is credited (one `purchase`); the excess is recorded on
  the order (`amount_received` above `amount`, a note in `failure`) and returned by hand. No extra entry.
- Paid after expiry (BTCPay's "expired, paid late"): the address belongs to this intent alone, so a full
  payment confirmed within CRYPTO_LATE_PAYMENT_WINDOW_S of the expiry is credited like a timely one (one
  `purchase`, noted as late); later than that it is recorded, not credited, and returned by hand.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, or_, select, update

from orchestration import payment_gateways, payment_notices
from orchestration.bootstrap import Services
from orchestration.payment_fulfilment import CREDITABLE, Applied, apply_fact
from orchestration.payment_orders import get_order
from orchestration.payment_tables import chain_cursors, crypto_transfers, orders
from orchestration.payment_units import money_unit, plain_unit, send_task
from orchestration.payments_crypto import SETTLE_TASK, record_transfers, watched
from payments.facts import PaymentFact

log = logging.getLogger(__name__)
MAX_SCAN_BLOCKS = 2000
FIRST_SCAN_BACK = 100


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def refresh(services: Services, order: Row[Any]) -> None:
    """Re-check the intent's unconfirmed transfers: deep enough now, moved by a reorg, or gone."""
    gateway = payment_gateways.crypto(services)
    chain_id, needed = order.chain_id, gateway.chain(order.chain_id).confirmations
    with plain_unit(services) as connection:
        rows = list(
            connection.execute(
                select(crypto_transfers).where(
                    crypto_transfers.c.order_id == order.id, crypto_transfers.c.status == "seen"
                )
            )
        )
    if not rows:
        return
    head = gateway.head(chain_id)
    for row in rows:
        number, block = row.block_number, row.block_hash
        if gateway.block_hash(chain_id, number) != block:
            again = [
                t
                for t in gateway.paid_by(chain_id, row.tx_hash, watched(order)) or []
                if t.log_index == row.log_index
            ]  # re-mined in another block, or dropped
            if not again:
                _mark(services, row.id, status="orphaned")
                continue
            number, block = again[0].block_number, again[0].block_hash.lower()
        deep = head - number + 1 >= needed
        _mark(services, row.id, status="confirmed" if deep else "seen", block_number=number, block_hash=block)


def _mark(services: Services, transfer_id: int, **values: Any) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(crypto_transfers)
            .where(crypto_transfers.c.id == transfer_id)
            .values(updated_at=_now(), **values)
        )


def settle(services: Services, order_id: str) -> Applied | None:
    """Apply the intent's confirmed transfers under the written policies; credit the pack at most once."""
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None or order.rail != "crypto":
        return None
    refresh(services, order)
    now = _now()
    with money_unit(services, order.user_id) as connection:
        locked = get_order(connection, order_id, lock=True)
        assert locked is not None
        sums: dict[str, int] = defaultdict(int)
        for row in connection.execute(
            select(crypto_transfers.c.status, crypto_transfers.c.amount).where(
                crypto_transfers.c.order_id == order_id
            )
        ):
            sums[row.status] += int(row.amount)
        confirmed, seen, price = sums["confirmed"], sums["seen"], int(locked.amount)
        applied = _apply_policy(services, connection, locked, confirmed=confirmed, seen=seen, now=now)
        notes = []
        if confirmed > price:
            notes.append(f"overpaid by {confirmed - price}: the excess is returned by hand")
        elif confirmed and confirmed < price:
            notes.append(f"underpaid: {confirmed} of {price} received")
        values: dict[str, Any] = {"amount_received": str(confirmed), "updated_at": now}
        if notes or applied.note:
            values["failure"] = "; ".join([*notes, applied.note] if applied.note else notes)[:200]
        connection.execute(update(orders).where(orders.c.id == order_id).values(**values))
    if not applied.noop:
        payment_notices.after_commit(services, order.user_id, [order_id], [applied])
    return applied


def _apply_policy(
    services: Services, connection: Any, order: Row[Any], *, confirmed: int, seen: int, now: datetime
) -> Applied:
    price = int(order.amount)
    if order.status in CREDITABLE and confirmed >= price:
        late = order.status == "expired" or _aware(order.expires_at) < now
        window = timedelta(seconds=services.settings.CRYPTO_LATE_PAYMENT_WINDOW_S)
        if late and now > _aware(order.expires_at) + window:
            return Applied(
                order.status, note="paid after the late-payment window: returned by hand", noop=True
            )
        address_key = f"{order.chain_id}:{order.deposit_address}"
        fact = PaymentFact(
            "paid",
            order.id,
            provider_ref=order.deposit_address,
            payment_ref=address_key,
            amount=price,
            currency=order.currency,
        )
        applied = apply_fact(connection, order, fact, now)
        return Applied(applied.status, applied.credits, "paid after expiry" if late else "", applied.noop)
    if order.status == "pending" and confirmed + seen >= price:
        connection.execute(update(orders).where(orders.c.id == order.id).values(status="paid", paid_at=now))
        return Applied("paid", note="confirming")
    if order.status == "paid" and confirmed + seen < price:
        connection.execute(
            update(orders).where(orders.c.id == order.id).values(status="pending", paid_at=None)
        )
        return Applied("pending", note="a reorg took the payment back before it was final")
    return Applied(order.status, noop=True)


def scan(services: Services, chain_id: int, *, now: datetime | None = None) -> int:
    """One pass on a chain: find transfers to open intents, settle those that have some, expire the rest."""
    gateway = payment_gateways.crypto(services)
    now = now or _now()
    late = now - timedelta(seconds=services.settings.CRYPTO_LATE_PAYMENT_WINDOW_S)
    with plain_unit(services) as connection:
        open_orders = list(
            connection.execute(
                select(orders).where(
                    orders.c.rail == "crypto",
                    orders.c.chain_id == chain_id,
                    or_(
                        orders.c.status.in_(("pending", "paid")),
                        and_(orders.c.status == "expired", orders.c.expires_at > late),
                    ),
                )
            )
        )
        cursor = connection.execute(
            select(chain_cursors.c.next_block).where(chain_cursors.c.chain_id == chain_id)
        ).scalar()
    head = gateway.head(chain_id)
    needed = gateway.chain(chain_id).confirmations
    first = max(0, head - needed - FIRST_SCAN_BACK) if cursor is None else int(cursor)
    last = min(head, first + MAX_SCAN_BLOCKS)
    by_address = {order.deposit_address: order for order in open_orders}
    found = (
        gateway.scan(chain_id, first, last, {o.deposit_address: o.token_address for o in open_orders})
        if (open_orders and first <= last)
        else []
    )
    with plain_unit(services) as connection:
        for address, order in by_address.items():
            record_transfers(connection, order, [t for t in found if t.to == address], now)
        _save_cursor(connection, chain_id, max(first, min(last, head - needed) + 1), now)
        with_transfers = set(
            connection.execute(
                select(crypto_transfers.c.order_id).where(
                    crypto_transfers.c.order_id.in_(list({o.id for o in open_orders})),
                    crypto_transfers.c.status.in_(("seen", "confirmed")),
                )
            ).scalars()
        )
        expired = connection.execute(
            update(orders)
            .where(
                orders.c.id.in_([o.id for o in open_orders if o.id not in with_transfers]),
                orders.c.status == "pending",
                orders.c.expires_at < now,
            )
            .values(status="expired", failure="nobody paid it in time", updated_at=now)
        ).rowcount
    for order_id in with_transfers:
        send_task(services, SETTLE_TASK, order_id)
    return int(expired)


def _save_cursor(connection: Any, chain_id: int, next_block: int, now: datetime) -> None:
    # The unconfirmed tail is scanned again next time, so a block a reorg replaced is looked at anew.
    done = connection.execute(
        update(chain_cursors)
        .where(chain_cursors.c.chain_id == chain_id)
        .values(next_block=next_block, updated_at=now)
    ).rowcount
    if not done:
        connection.execute(
            chain_cursors.insert().values(chain_id=chain_id, next_block=next_block, updated_at=now)
        )
