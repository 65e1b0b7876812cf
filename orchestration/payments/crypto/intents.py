"""Crypto use cases: an intent (a deposit address of its own, an exact amount, an expiry), a submitted
transaction, and the transfers found for it. Crediting is `payments_crypto_settle.settle` on `critical`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, update

from ledger.idempotency import upsert_ignore
from orchestration.errors import PaymentRefused
from orchestration.payments import gateways
from orchestration.payments.orders import NewOrder, get_order, insert_order, new_order_id, pack_or_refuse
from orchestration.payments.tables import crypto_transfers, deposit_keys, orders
from orchestration.payments.units import plain_unit, send_task
from orchestration.services import Services
from payments.crypto_gateway import Transfer

VERIFY_TASK = "creditflow.critical.verify_crypto_payment"
SETTLE_TASK = "creditflow.critical.settle_crypto_intent"


def _now() -> datetime:
    return datetime.now(UTC)


def create_intent(
    services: Services, *, user_id: str, pack_id: str, chain_id: int, token: str | None
) -> dict[str, Any]:
    """An order paid to a deposit address of its own; answers where, exactly how much, until when."""
    gateway = gateways.crypto(services)
    pack = pack_or_refuse(services, pack_id, "crypto")
    chain = services.settings.chain(chain_id)
    if chain is None:
        raise PaymentRefused(f"Chain {chain_id} is not accepted here.", kind="unknown-chain")
    if token is not None and token not in chain.tokens:
        raise PaymentRefused(f"Token {token!r} is not accepted on chain {chain_id}.", kind="unknown-token")
    amount = pack.crypto.get(f"{chain_id}:{token}" if token else str(chain_id))
    if amount is None:
        raise PaymentRefused(
            f"Pack {pack_id!r} has no price in {token or chain.native_symbol} on chain {chain_id}.",
            kind="pack-not-on-rail",
        )
    now, order_id = _now(), new_order_id()
    token_address = chain.tokens[token].lower() if token else None
    order = NewOrder(
        user_id,
        pack,
        "crypto",
        amount,
        token or chain.native_symbol,
        expires_at=now + timedelta(seconds=services.settings.CRYPTO_INTENT_TTL_S),
        chain_id=chain_id,
        token_address=token_address,
    )
    # The address is derived once, outside any transaction: the index is taken in a short transaction of
    # its own (a failed insert below leaves an unused index, never a shared one).
    with plain_unit(services) as connection:
        index = connection.execute(
            deposit_keys.insert().values(order_id=order_id, created_at=now).returning(deposit_keys.c.id)
        ).scalar_one()
    address = gateway.keys.address(int(index))
    with plain_unit(services) as connection:
        row = insert_order(
            connection,
            order,
            now=now,
            id=order_id,
            deposit_address=address.lower(),
            provider_ref=address.lower(),
        )
    return {
        "id": row.id,
        "chain_id": chain_id,
        "deposit_address": address,
        "amount_wei": str(amount),
        "currency": row.currency,
        "token_address": token_address,
        "confirmations": chain.confirmations,
        "expires_at": row.expires_at,
    }


def submit(services: Services, *, user_id: str, order_id: str, tx_hash: str) -> dict[str, Any]:
    """The buyer names the transaction that paid: verify it on `critical` (the scanner would find it too)."""
    gateways.crypto(services)
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None or order.user_id != user_id or order.rail != "crypto":
        raise PaymentRefused("No such crypto intent.", kind="not-found", status=404)
    send_task(services, VERIFY_TASK, order_id, tx_hash.lower())
    return {"status": "verifying", "order_id": order_id}


def counts(order: Row[Any], chain_id: int, token_address: str | None) -> bool:
    """Whether a transfer is in the intent's own asset (its chain, its token or the native coin)."""
    return int(chain_id) == int(order.chain_id) and (token_address or None) == (order.token_address or None)


def _moment(unix: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else None


def record_transfers(connection: Connection, order: Row[Any], found: list[Transfer], now: datetime) -> int:
    """Remember transfers to an intent's address (once each: UNIQUE (chain, tx, log)), in its asset or not
    (another token or chain is recorded for an operator); a re-mined or re-found one moves block."""
    added = 0
    for transfer in found:
        chain_id = transfer.chain_id or order.chain_id
        values = {
            "order_id": order.id,
            "chain_id": chain_id,
            "tx_hash": transfer.tx_hash.lower(),
            "log_index": transfer.log_index,
            "token_address": transfer.token_address,
            "amount": str(transfer.amount),
            "block_number": transfer.block_number,
            "block_hash": transfer.block_hash.lower(),
            "block_time": _moment(transfer.block_time),
            "status": "seen",
            "review": None if counts(order, chain_id, transfer.token_address) else "other-asset",
            "created_at": now,
            "updated_at": now,
        }
        inserted = connection.execute(
            upsert_ignore(connection, crypto_transfers).values(**values).returning(crypto_transfers.c.id)
        ).first()
        if inserted is None:
            _found_again(connection, values, now)
        added += inserted is not None
    return added


def _found_again(connection: Connection, values: dict[str, Any], now: datetime) -> None:
    """A transfer already recorded, seen again: it moves block if it is not final yet."""
    same = and_(
        crypto_transfers.c.chain_id == values["chain_id"],
        crypto_transfers.c.tx_hash == values["tx_hash"],
        crypto_transfers.c.log_index == values["log_index"],
    )
    keys = ("block_number", "block_hash", "block_time")
    moved = {key: values[key] for key in keys if values[key] is not None}
    connection.execute(
        update(crypto_transfers)
        .where(same, crypto_transfers.c.status != "confirmed")
        .values(status="seen", unknown_since=None, updated_at=now, **moved)
    )
    # Found again after a deep reorg had taken it: it is back, nothing left for an operator.
    connection.execute(
        update(crypto_transfers)
        .where(same, crypto_transfers.c.review == "reorged", crypto_transfers.c.reviewed_at.is_(None))
        .values(review=None)
    )


def verify_submitted(services: Services, *, order_id: str, tx_hash: str) -> str:
    """Check a submitted transaction: 'not mined' (retry later), 'no payment', or 'recorded'."""
    gateway = gateways.crypto(services)
    with plain_unit(services) as connection:
        order = get_order(connection, order_id)
    if order is None:
        return "no payment"
    found = gateway.paid_by(order.chain_id, tx_hash, {order.deposit_address})
    if found is None:
        return "not mined"
    if not found:
        _note(services, order_id, f"transaction {tx_hash[:18]}... paid nothing to this intent")
        return "no payment"
    with plain_unit(services) as connection:
        record_transfers(connection, order, found, _now())
    send_task(services, SETTLE_TASK, order_id)
    return "recorded"


def _note(services: Services, order_id: str, text: str) -> None:
    with plain_unit(services) as connection:
        connection.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status.in_(("pending", "paid")))
            .values(failure=text[:200], updated_at=_now())
        )
