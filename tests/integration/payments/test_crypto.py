"""Crypto top-ups on an in-process chain (eth-tester on py-evm, served over JSON-RPC so the worker sees it
too) with an ERC-20 test token deployed from committed Vyper bytecode: confirmations, a reorg, failed
transactions, wrong recipients, a fake token, resubmission, and the written payment policies."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from orchestration.payments.crypto import intents
from orchestration.payments.crypto import scan as payments_crypto_scan
from orchestration.payments.crypto import settle as payments_crypto_settle
from orchestration.services import Services
from tests.integration.payments.conftest import (
    CHAIN_ID,
    CONFIRMATIONS,
    MNEMONIC,
    PRICE_TST,
    PRICE_WEI,
    M,
    PayChain,
    ledger_clean,
    order_row,
    posted,
    wait_for,
    wait_status,
)
from tests.integration.payments.factories import WELCOME, credited_once, expire_at, intent, transfers, verify

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]


def test_native_payment_is_credited_once_after_enough_confirmations(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    other = intent(client, headers)
    assert made["deposit_address"] != other["deposit_address"]  # one address per intent
    assert (made["amount_wei"], made["currency"], made["confirmations"]) == (
        str(PRICE_WEI),
        "ETH",
        CONFIRMATIONS,
    )
    from payments.crypto_keys import DepositKeys

    index_of = {DepositKeys(MNEMONIC).address(n): n for n in range(1, 400)}
    assert made["deposit_address"] in index_of  # derived from the HD key in settings
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    for _ in range(2):  # the same transaction submitted twice
        answer = client.post(
            f"/api/v1/payments/crypto/intents/{made['id']}/submit", json={"tx_hash": tx}, headers=headers
        )
        assert answer.status_code == 202, answer.json
    wait_status(services, made["id"], "paid")  # seen in one block: confirming, not credited
    assert posted(services, user_id) == WELCOME
    test_chain.mine(CONFIRMATIONS - 1)
    payments_crypto_scan.scan(services, CHAIN_ID)
    wait_status(services, made["id"], "credited")
    verify(services, made["id"], tx)  # and once more, later
    payments_crypto_settle.settle(services, made["id"])
    assert transfers(services, made["id"]) == [("confirmed", str(PRICE_WEI))]
    credited_once(services, user_id, made["id"])


def test_a_token_payment_nobody_submitted_is_found_by_the_scanner(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers, token="TST")
    assert (made["amount_wei"], made["token_address"]) == (str(PRICE_TST), test_chain.token.address.lower())
    test_chain.pay_token(made["deposit_address"], PRICE_TST)
    test_chain.mine(CONFIRMATIONS)
    payments_crypto_scan.scan(services, CHAIN_ID)
    wait_status(services, made["id"], "credited")
    assert posted(services, user_id) == WELCOME + 1000 * M
    ledger_clean(services)


@pytest.mark.parametrize(
    "case", ["failed transaction", "wrong recipient", "fake token", "native for a token"]
)
def test_payments_that_paid_nothing_are_not_credited(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, case: str
) -> None:
    user_id, headers = user
    made = intent(client, headers, token="TST")
    address = made["deposit_address"]
    if case == "failed transaction":  # status 0: the sender has no tokens, the transfer reverts
        broke = test_chain.chain.tester.get_accounts()[3]
        tx = test_chain.pay_token(address, PRICE_TST, sender=broke, gas=200_000)
        assert test_chain.w3.eth.get_transaction_receipt(tx)["status"] == 0
    elif case == "wrong recipient":
        tx = test_chain.pay_token("0x" + "44" * 20, PRICE_TST)
    elif case == "fake token":  # a contract emitting Transfer to our address, but not allow-listed
        tx = test_chain.pay_token(address, PRICE_TST, token=test_chain.fake)
    else:  # recorded for an operator (another asset), never credited
        tx = test_chain.pay(address, PRICE_TST)
    test_chain.mine(CONFIRMATIONS)
    other_asset = case == "native for a token"
    assert verify(services, made["id"], tx) == ("recorded" if other_asset else "no payment")
    payments_crypto_scan.scan(services, CHAIN_ID)
    payments_crypto_settle.settle(services, made["id"])
    time.sleep(0.5)
    assert transfers(services, made["id"]) == ([("confirmed", str(PRICE_TST))] if other_asset else [])
    assert order_row(services, made["id"]).status == "pending"
    assert posted(services, user_id) == WELCOME


def test_a_reorg_before_finality_leaves_the_intent_unpaid(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    snapshot = test_chain.chain.tester.take_snapshot()
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    assert verify(services, made["id"], tx) == "recorded"
    payments_crypto_settle.settle(services, made["id"])
    assert order_row(services, made["id"]).status == "paid"
    test_chain.chain.tester.revert_to_snapshot(snapshot)  # the block with the payment is gone
    test_chain.mine(CONFIRMATIONS + 1)
    payments_crypto_settle.settle(services, made["id"])
    order = wait_status(services, made["id"], "pending")
    assert transfers(services, made["id"]) == [("orphaned", str(PRICE_WEI))]
    assert (order.credited, order.amount_received) == (0, "0")
    assert posted(services, user_id) == WELCOME
    ledger_clean(services)


def test_underpayment_waits_and_two_payments_adding_up_credit_once(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    first = test_chain.pay(made["deposit_address"], PRICE_WEI // 2)
    test_chain.mine(CONFIRMATIONS)
    verify(services, made["id"], first)
    payments_crypto_settle.settle(services, made["id"])
    order = order_row(services, made["id"])
    assert (order.status, order.amount_received, order.credited) == ("pending", str(PRICE_WEI // 2), 0)
    assert order.failure.startswith("underpaid")
    second = test_chain.pay(made["deposit_address"], PRICE_WEI - PRICE_WEI // 2)
    test_chain.mine(CONFIRMATIONS)
    verify(services, made["id"], second)
    payments_crypto_settle.settle(services, made["id"])
    wait_status(services, made["id"], "credited")
    credited_once(services, user_id, made["id"])


@pytest.mark.parametrize("payments", [[3 * PRICE_WEI // 2], [PRICE_WEI, PRICE_WEI]])
def test_overpayment_credits_the_pack_once_and_records_the_excess(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, payments: list[int]
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    hashes = [test_chain.pay(made["deposit_address"], value) for value in payments]
    test_chain.mine(CONFIRMATIONS)
    for tx in hashes:
        verify(services, made["id"], tx)
    payments_crypto_settle.settle(services, made["id"])
    wait_status(services, made["id"], "credited")
    wait_for(
        lambda: order_row(services, made["id"]).amount_received == str(sum(payments)), what="all counted"
    )
    assert "overpaid" in order_row(services, made["id"]).failure
    credited_once(services, user_id, made["id"])


def test_an_expired_intent_paid_late_is_credited_within_the_window_only(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    late, too_late = intent(client, headers), intent(client, headers)
    payments_crypto_scan.scan(services, CHAIN_ID, now=datetime.now(UTC) + timedelta(hours=2))
    assert order_row(services, late["id"]).status == "expired"
    assert order_row(services, too_late["id"]).status == "expired"
    # Lateness is judged by the paying block's time: one expired an hour ago, one eight days ago (past
    # the 7-day window).
    for made, ago in ((late, timedelta(hours=1)), (too_late, timedelta(days=8))):
        expire_at(services, made["id"], datetime.now(UTC) - ago)
    hashes = {made["id"]: test_chain.pay(made["deposit_address"], PRICE_WEI) for made in (late, too_late)}
    test_chain.mine(CONFIRMATIONS)
    for order_id, tx in hashes.items():
        verify(services, order_id, tx)
        payments_crypto_settle.settle(services, order_id)
    credited = wait_status(services, late["id"], "credited")
    assert "paid after expiry" in credited.failure
    kept = order_row(services, too_late["id"])
    assert (kept.status, kept.credited, kept.amount_received) == ("expired", 0, str(PRICE_WEI))
    assert "late-payment window" in kept.failure
    assert posted(services, user_id) == WELCOME + 1000 * M
    ledger_clean(services)


def test_crypto_refuses_unknown_chains_and_tokens(client: FlaskClient, user: Any) -> None:
    _user_id, headers = user
    for body, kind in (
        ({"pack_id": "credits-1000", "chain_id": 1}, "unknown-chain"),
        ({"pack_id": "credits-1000", "chain_id": CHAIN_ID, "token": "USDC"}, "unknown-token"),
        ({"pack_id": "credits-100", "chain_id": CHAIN_ID}, "pack-not-on-rail"),
    ):
        answer = client.post("/api/v1/payments/crypto/intents", json=body, headers=headers)
        assert answer.status_code == 422, answer.json
        assert answer.json["type"].endswith(kind)
    bad = client.post(
        "/api/v1/payments/crypto/intents/ord_x/submit", json={"tx_hash": "0x12"}, headers=headers
    )
    assert bad.status_code == 422


def test_an_intent_derives_its_address_once_and_outside_any_transaction(
    services: Services, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from payments.crypto_keys import DepositKeys

    user_id, _headers = user
    real = DepositKeys.private_key
    connections_open: list[int] = []

    def observed(self: DepositKeys, index: int) -> bytes:
        connections_open.append(services.engine.pool.checkedout())  # type: ignore[attr-defined]
        return real(self, index)

    monkeypatch.setattr(DepositKeys, "private_key", observed)
    made = intents.create_intent(
        services, user_id=user_id, pack_id="credits-1000", chain_id=CHAIN_ID, token=None
    )
    assert connections_open == [0]  # one derivation, while no transaction holds a connection
    assert order_row(services, made["id"]).deposit_address == made["deposit_address"].lower()
