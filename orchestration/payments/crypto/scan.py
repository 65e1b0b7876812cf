"""The chain scanner (beat, `maintenance`): finds transfers to watched deposit addresses, expires intents
nobody paid in full in time, and sends `settle` only for intents that have something new to settle."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from orchestration.payments import gateways
from orchestration.payments.crypto.intents import SETTLE_TASK, counts, record_transfers
from orchestration.payments.crypto.settle import REORG_WATCH_BLOCKS, open_or_watched
from orchestration.payments.tables import chain_cursors, crypto_transfers, orders
from orchestration.payments.units import plain_unit, send_task
from orchestration.services import Services
from payments.crypto_gateway import Scanned

log = logging.getLogger(__name__)
MAX_SCAN_BLOCKS = 2000
FIRST_SCAN_BACK = 100


@dataclass
class ScanPass:
    """What one pass did on one chain."""

    expired: int = 0
    settle_sent: list[str] = field(default_factory=list)
    through: int = -1  # the last block read (the node answered it and its receipts)


def scan(services: Services, chain_id: int, *, now: datetime | None = None) -> ScanPass:
    """One pass on a chain: record transfers to watched addresses, settle the intents that need it, expire
    the ones that were not paid in full in time."""
    gateway = gateways.crypto(services)
    now = now or datetime.now(UTC)
    with plain_unit(services) as connection:
        watched = list(
            connection.execute(
                select(orders).where(
                    orders.c.rail == "crypto",
                    open_or_watched(now, services.settings.CRYPTO_LATE_PAYMENT_WINDOW_S),
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
    by_address = {order.deposit_address: order for order in watched}
    scanned = (
        gateway.scan(chain_id, first, last, set(by_address))
        if (watched and first <= last)
        else Scanned([], last)
    )
    reorged = _credited_blocks_replaced(services, gateway, chain_id, head)
    result = ScanPass(through=scanned.through)
    with plain_unit(services) as connection:
        for address, order in by_address.items():
            record_transfers(connection, order, [t for t in scanned.found if t.to == address], now)
        _save_cursor(connection, chain_id, cursor, max(first, min(scanned.through, head - needed) + 1), now)
        sums = _transfer_sums(connection, watched, set(gateway.chains))
        expired = _expire(connection, [o for o in watched if o.chain_id == chain_id], sums, now)
        result.expired = len(expired)
        due = {o.id for o in watched if o.id in sums and sums[o.id].needs_settle(o)} | expired | reorged
        result.settle_sent = sorted(due)
    for order_id in result.settle_sent:
        send_task(services, SETTLE_TASK, order_id)
    return result


@dataclass
class _Sums:
    seen: int = 0  # the intent's own asset, not yet final
    confirmed: int = 0
    unsettled: bool = False  # a transfer in another asset not yet final, or one not yet flagged

    def needs_settle(self, order: Any) -> bool:
        # A settle is due while something can still change, not on every pass: a partial payment that is
        # final and already counted in `amount_received` waits for the rest, or for the expiry.
        return bool(self.seen) or self.unsettled or self.confirmed != int(order.amount_received)


def _transfer_sums(connection: Any, watched: list[Any], chains: set[int]) -> dict[str, _Sums]:
    # Transfers on a chain no longer configured cannot be asked about: they do not make a settle due.
    by_id = {order.id: order for order in watched}
    sums: dict[str, _Sums] = defaultdict(_Sums)
    for row in connection.execute(
        select(crypto_transfers).where(
            crypto_transfers.c.order_id.in_(list(by_id)),
            crypto_transfers.c.status.in_(("seen", "confirmed")),
            crypto_transfers.c.chain_id.in_(list(chains)),
        )
    ):
        order, totals = by_id[row.order_id], sums[row.order_id]
        if not counts(order, row.chain_id, row.token_address):
            totals.unsettled |= row.status == "seen" or row.review is None
        elif row.status == "seen":
            totals.seen += int(row.amount)
        else:
            totals.confirmed += int(row.amount)
    return sums


def _expire(connection: Any, candidates: list[Any], sums: dict[str, _Sums], now: datetime) -> set[str]:
    """Pending intents past their expiry without their price on the way (seen or final) expire."""
    done: set[str] = set()
    for order in candidates:
        totals = sums.get(order.id, _Sums())
        if order.status != "pending" or _aware(order.expires_at) >= now:
            continue
        if totals.seen + totals.confirmed >= int(order.amount):
            continue  # paid in full, not yet final: it is settled, not expired
        received = totals.seen + totals.confirmed
        note = (
            f"underpaid: {received} of {order.amount} received by the expiry; returned by hand"
            if received
            else "nobody paid it in time"
        )
        changed = connection.execute(
            update(orders)
            .where(orders.c.id == order.id, orders.c.status == "pending")
            .values(status="expired", failure=note[:200], updated_at=now)
        ).rowcount
        if changed:
            done.add(order.id)
    return done


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _credited_blocks_replaced(services: Services, gateway: Any, chain_id: int, head: int) -> set[str]:
    """Intents with a final transfer whose block the chain now answers with another hash (a deep reorg)."""
    with plain_unit(services) as connection:
        rows = list(
            connection.execute(
                select(
                    crypto_transfers.c.order_id,
                    crypto_transfers.c.block_number,
                    crypto_transfers.c.block_hash,
                ).where(
                    crypto_transfers.c.chain_id == chain_id,
                    crypto_transfers.c.status == "confirmed",
                    crypto_transfers.c.block_number >= head - REORG_WATCH_BLOCKS,
                )
            )
        )
    answers: dict[int, Any] = {}
    replaced: set[str] = set()
    for row in rows:
        if row.block_number not in answers:
            answers[row.block_number] = gateway.block(chain_id, row.block_number)
        block = answers[row.block_number]
        if block is not None and block.hash != row.block_hash:  # None is unknown: asked again next pass
            replaced.add(row.order_id)
    return replaced


def _save_cursor(connection: Any, chain_id: int, read: int | None, next_block: int, now: datetime) -> None:
    # The unconfirmed tail is scanned again next time, so a block a reorg replaced is looked at anew; the
    # scan stops before a block the node did not answer, so a lagging node makes it wait, not skip. A
    # compare-and-set on the value read: a settle that moved it back for an orphan's blocks meanwhile wins.
    if read is not None:
        connection.execute(
            update(chain_cursors)
            .where(chain_cursors.c.chain_id == chain_id, chain_cursors.c.next_block == read)
            .values(next_block=next_block, updated_at=now)
        )
        return
    exists = connection.execute(
        select(chain_cursors.c.chain_id).where(chain_cursors.c.chain_id == chain_id)
    ).first()
    if exists is None:
        connection.execute(
            chain_cursors.insert().values(chain_id=chain_id, next_block=next_block, updated_at=now)
        )
