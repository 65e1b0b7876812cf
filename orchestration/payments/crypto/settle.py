"""Crediting crypto intents: re-checking their transfers on the chain, then the written policies.

Written policies (README "Payments"), each mapped to ledger entries:
- A transfer counts once its block is the chain's configured confirmations deep and still canonical.
  A node that does not answer (no such block, no receipt: a lagging node behind a load balancer) is
  unknown, asked again on the next pass. A transfer is orphaned only when the canonical block at its
  height has another hash and its receipt does not place it in another canonical block, or when its
  block and receipt stay unanswered while the chain grows by its confirmations; an orphan's blocks are
  scanned again (a re-mined or wrongly orphaned transfer is found and counts again).
- Underpayment: not credited. The intent waits for the rest until it expires, then expires; what arrived
  is shown in `amount_received`, listed for an operator (`underpaid`) and returned by hand. No entry.
- Exact payment, or several payments to one intent adding up to the amount: one `purchase` of the pack,
  keyed by the intent's deposit address, so it is credited once however many transfers paid it.
- Overpayment, or a second payment once credited: the pack is credited once; the excess is recorded
  (`amount_received` above `amount`, a note in `failure`, the transfers listed as `excess`), returned by hand.
- Another token, the native coin of a token intent, or another chain, to the intent's address: recorded,
  never credited, listed as `other-asset`.
- Paid after expiry (BTCPay's "expired, paid late"), judged by the timestamp of the block of the transfer
  that completed the amount, not by when we settle: within CRYPTO_LATE_PAYMENT_WINDOW_S of the expiry it is
  credited like a timely one (noted as late); later it is recorded, not credited, and listed as `late`.
- A reorg deeper than the confirmations that removes a credited transfer: the credit stays, the transfer
  is listed as `reorged` and the order noted for an operator, who decides (an admin refund takes it back).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, or_, select, update

from orchestration.payments import gateways, notices
from orchestration.payments.books import CREDITABLE, TAKEN, Applied
from orchestration.payments.crypto import review as payments_crypto_review
from orchestration.payments.crypto.intents import counts
from orchestration.payments.fulfilment import apply_fact
from orchestration.payments.orders import get_order
from orchestration.payments.tables import chain_cursors, crypto_transfers, orders
from orchestration.payments.units import money_unit, plain_unit
from orchestration.services import Services
from payments.facts import PaymentFact

log = logging.getLogger(__name__)
# Credited transfers are re-checked this many blocks past their own, for a reorg deeper than the
# confirmations (Ethereum finalises after two epochs, 64 blocks; slower chains get the same count).
REORG_WATCH_BLOCKS = 256


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def refresh(services: Services, order: Row[Any]) -> None:
    """Re-check the intent's unconfirmed transfers, and its recent confirmed ones: deep enough now, moved by
    a reorg, orphaned, or unknown (the node did not answer: asked again next time)."""
    gateway = gateways.crypto(services)
    with plain_unit(services) as connection:
        rows = list(
            connection.execute(
                select(crypto_transfers).where(
                    crypto_transfers.c.order_id == order.id,
                    crypto_transfers.c.status.in_(("seen", "confirmed")),
                )
            )
        )
    heads: dict[int, int] = {}
    for row in rows:
        if row.chain_id not in gateway.chains:
            continue  # a chain no longer configured: nothing can be asked
        if row.chain_id not in heads:
            heads[row.chain_id] = gateway.head(row.chain_id)
        head = heads[row.chain_id]
        if row.status == "confirmed" and row.block_number < head - REORG_WATCH_BLOCKS:
            continue
        _recheck(services, gateway, order, row, head)


def _recheck(services: Services, gateway: Any, order: Row[Any], row: Row[Any], head: int) -> None:
    chain_id, needed = row.chain_id, gateway.chain(row.chain_id).confirmations
    block = gateway.block(chain_id, row.block_number)
    if block is not None and block.hash == row.block_hash:
        _settled_in(services, row, block, head, needed)
        return
    if block is None and row.status == "confirmed":
        return  # a final transfer is only ever undone by another hash at its height, not by silence
    again = gateway.paid_by(chain_id, row.tx_hash, {order.deposit_address})
    if again is None:  # no receipt: re-mined and not yet indexed, dropped, or a lagging node
        if block is not None:
            _orphan(services, order, row)  # another block at its height, and no receipt placing it elsewhere
        elif row.unknown_since is not None and head - int(row.unknown_since) >= needed:
            _orphan(services, order, row)  # block and receipt unanswered while the chain grew `needed`
        elif row.unknown_since is None:
            _mark(services, row.id, unknown_since=head)
        return
    same = [t for t in again if t.log_index == row.log_index]
    if not same:  # the canonical transaction moved nothing to us (it failed where it was re-mined)
        _orphan(services, order, row)
        return
    moved = gateway.block(chain_id, same[0].block_number)
    if moved is not None and moved.hash == same[0].block_hash:
        _settled_in(services, row, moved, head, needed)
    elif row.unknown_since is None:
        _mark(services, row.id, unknown_since=head)  # a receipt from a block we cannot confirm yet


def _settled_in(services: Services, row: Row[Any], block: Any, head: int, needed: int) -> None:
    # A confirmed transfer still in its block stays confirmed even if a lagging node reports a lower head.
    kept = row.status == "confirmed" and block.number == row.block_number
    status = "confirmed" if kept or head - block.number + 1 >= needed else "seen"
    _mark(
        services,
        row.id,
        status=status,
        block_number=block.number,
        block_hash=block.hash,
        block_time=datetime.fromtimestamp(block.timestamp, UTC),
        unknown_since=None,
    )


def _orphan(services: Services, order: Row[Any], row: Row[Any]) -> None:
    credited = row.status == "confirmed" and order.status in TAKEN
    _mark(
        services, row.id, status="orphaned", unknown_since=None, **({"review": "reorged"} if credited else {})
    )
    with plain_unit(services) as connection:  # scan its blocks again: a re-mined copy is found and counts
        connection.execute(
            update(chain_cursors)
            .where(chain_cursors.c.chain_id == row.chain_id, chain_cursors.c.next_block > row.block_number)
            .values(next_block=row.block_number, updated_at=_now())
        )
    if credited:
        log.error("order %s: credited transfer %s is no longer canonical (deep reorg)", order.id, row.tx_hash)


def _mark(services: Services, transfer_id: int, **values: Any) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(crypto_transfers)
            .where(crypto_transfers.c.id == transfer_id)
            .values(updated_at=_now(), **values)
        )


def settle(services: Services, order_id: str, *, now: datetime | None = None) -> Applied | None:
    """Apply the intent's confirmed transfers under the written policies; credit the pack at most once."""
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None or order.rail != "crypto":
        return None
    refresh(services, order)
    now = now or _now()
    with money_unit(services, order.user_id) as connection:
        locked = get_order(connection, order_id, lock=True)
        assert locked is not None
        rows = list(
            connection.execute(select(crypto_transfers).where(crypto_transfers.c.order_id == order_id))
        )
        mine = sorted(
            (r for r in rows if counts(locked, r.chain_id, r.token_address)),
            key=lambda r: (r.block_number, r.log_index),
        )
        confirmed = sum(int(r.amount) for r in mine if r.status == "confirmed")
        seen = sum(int(r.amount) for r in mine if r.status == "seen")
        price = int(locked.amount)
        applied, too_late = _apply_policy(services, connection, locked, mine, seen=seen, now=now)
        notes = []
        if any(r.review == "reorged" and r.reviewed_at is None for r in rows):
            notes.append("a deep reorg removed a credited transfer: for an operator")
        if confirmed > price:
            notes.append(f"overpaid by {confirmed - price}: the excess is returned by hand")
        elif confirmed and confirmed < price and applied.status not in TAKEN:
            notes.append(f"underpaid: {confirmed} of {price} received")
        values: dict[str, Any] = {"amount_received": str(confirmed), "updated_at": now}
        if notes or applied.note:
            values["failure"] = "; ".join([*notes, applied.note] if applied.note else notes)[:200]
        connection.execute(update(orders).where(orders.c.id == order_id).values(**values))
        after = get_order(connection, order_id)
        assert after is not None
        payments_crypto_review.mark(connection, after, rows, too_late=too_late, now=now)
    if not applied.noop:
        notices.after_commit(services, order.user_id, [order_id], [applied])
    return applied


def _paying_time(rows: list[Row[Any]], price: int, now: datetime) -> datetime:
    """The block time of the confirmed transfer that completed the price (now when it is not known)."""
    total = 0
    for row in rows:
        if row.status == "confirmed":
            total += int(row.amount)
            if total >= price:
                return _aware(row.block_time) if row.block_time else now
    return now


def _apply_policy(
    services: Services, connection: Any, order: Row[Any], rows: list[Row[Any]], *, seen: int, now: datetime
) -> tuple[Applied, bool]:
    price = int(order.amount)
    confirmed = sum(int(r.amount) for r in rows if r.status == "confirmed")
    if order.status in CREDITABLE and confirmed >= price:
        paid_at, expires = _paying_time(rows, price, now), _aware(order.expires_at)
        window = timedelta(seconds=services.settings.CRYPTO_LATE_PAYMENT_WINDOW_S)
        if paid_at > expires + window:
            note = "paid after the late-payment window: returned by hand"
            return Applied(order.status, note=note, noop=True), True
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
        late = "paid after expiry" if paid_at > expires else ""
        return Applied(applied.status, applied.credits, late, applied.noop), False
    if order.status == "pending" and confirmed + seen >= price:
        connection.execute(update(orders).where(orders.c.id == order.id).values(status="paid", paid_at=now))
        return Applied("paid", note="confirming"), False
    if order.status == "paid" and confirmed + seen < price:
        connection.execute(
            update(orders).where(orders.c.id == order.id).values(status="pending", paid_at=None)
        )
        return Applied("pending", note="a reorg took the payment back before it was final"), False
    return Applied(order.status, noop=True), False


def open_or_watched(now: datetime, window_s: int) -> Any:
    """Crypto orders whose address is watched: open ones, and any other until the late-payment window
    after its expiry has passed (a second payment or another asset is then still recorded)."""
    late = now - timedelta(seconds=window_s)
    return or_(orders.c.status.in_(("pending", "paid")), orders.c.expires_at > late)
