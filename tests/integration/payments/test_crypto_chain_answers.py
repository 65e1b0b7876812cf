"""Crypto payments when the chain's node answers null or reorganises deeper than the confirmations, when
the payment's block time and not the settle time decides lateness, and for what the written policies
send to an operator (underpaid and expired, a second payment, another asset or chain, a deep reorg)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from api.metrics import CryptoReviewCollector
from orchestration.payments import gateways
from orchestration.payments.crypto import intents
from orchestration.payments.crypto import review as payments_crypto_review
from orchestration.payments.crypto import scan as payments_crypto_scan
from orchestration.payments.crypto.settle import settle
from orchestration.payments.orders import get_order
from orchestration.payments.tables import chain_cursors
from orchestration.services import Services
from tests.integration.payments.conftest import (
    CHAIN_ID,
    CONFIRMATIONS,
    PRICE_TST,
    PRICE_WEI,
    M,
    PayChain,
    order_row,
    posted,
    purchases,
    wait_status,
)
from tests.integration.payments.factories import (
    WELCOME,
    expire_at,
    intent,
    services_with,
    transfers,
    verify,
)
from tests.support.chain_rpc import Lag, chain_rpc
from tests.support.processes import ROOT, child_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pay_worker")]
NULL_BLOCKS = {"eth_getBlockByNumber", "eth_getBlockByHash"}
NULL_RECEIPTS = {"eth_getTransactionReceipt", "eth_getTransactionByHash"}
OTHER_CHAIN = CHAIN_ID + 1  # the same node served again under another id: the same address elsewhere


def services_on(
    pay_settings: dict[str, str], chains: list[dict[str, Any]]
) -> AbstractContextManager[Services]:
    """The suite's services with other chain settings."""
    return services_with(pay_settings, CRYPTO_CHAINS=json.dumps(chains))


def chain_entry(url: str, chain_id: int = CHAIN_ID, test_chain: PayChain | None = None) -> dict[str, Any]:
    tokens = {"TST": test_chain.token.address} if test_chain else {}
    return {"chain_id": chain_id, "rpc_url": url, "confirmations": CONFIRMATIONS, "tokens": tokens}


@pytest.fixture
def lagging(pay_settings: dict[str, str], test_chain: PayChain) -> Iterator[tuple[Services, Lag]]:
    """Services whose node is the suite's chain behind a node that lags as the test says."""
    lag = Lag()
    with (
        chain_rpc(test_chain.chain, lag) as (url, _chain),
        services_on(pay_settings, [chain_entry(url, test_chain=test_chain)]) as built,
    ):
        yield built, lag


def operator_cli(pay_settings: dict[str, str], *args: str) -> str:
    """Run `creditflow ...` as an operator would, on the suite's database; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=child_env(**pay_settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def record_only(services: Services, order_id: str, tx: str) -> None:
    """What verify does, without sending the settle to the worker (the test settles when it chooses)."""
    gateway = gateways.crypto(services)
    with services.uow() as connection:
        order = get_order(connection, order_id)
        assert order is not None
        found = gateway.paid_by(CHAIN_ID, tx, {order.deposit_address})
        intents.record_transfers(connection, order, found, datetime.now(UTC))


def reviews(services: Services, order_id: str) -> list[tuple[str, str | None]]:
    """(status, why an operator must look) of the order's crypto transfers."""
    return transfers(services, order_id, "review")


def cursor(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(
            connection.execute(
                select(chain_cursors.c.next_block).where(chain_cursors.c.chain_id == CHAIN_ID)
            ).scalar_one()
        )


def paid_intent(
    client: FlaskClient, headers: dict[str, str], scanning: Services, test_chain: PayChain
) -> Any:
    """A new intent, the chain's cursor brought up to date, then the intent paid: (intent, tx, block)."""
    made = intent(client, headers)
    payments_crypto_scan.scan(scanning, CHAIN_ID)
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    return made, tx, int(test_chain.w3.eth.get_transaction_receipt(tx)["blockNumber"])


def settled_and_credited(services: Services, settling: Services, order_id: str, user_id: str) -> None:
    """Settle the intent (through `settling`'s node): it is credited with the pack, once."""
    settle(settling, order_id)
    assert order_row(services, order_id).status == "credited"
    assert posted(services, user_id) == WELCOME + 1000 * M


def test_null_answers_while_confirming_are_asked_again_not_taken_for_a_reorg(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, lagging: tuple[Services, Lag]
) -> None:
    user_id, headers = user
    lagged, lag = lagging
    made = intent(client, headers)
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    record_only(services, made["id"], tx)
    lag.methods = NULL_BLOCKS | NULL_RECEIPTS  # "no such block", "receipt not found"
    test_chain.mine(1)
    settle(lagged, made["id"])
    assert transfers(services, made["id"]) == [("seen", str(PRICE_WEI))]  # unknown: not orphaned
    assert order_row(services, made["id"]).status == "paid"
    lag.methods = set()
    test_chain.mine(CONFIRMATIONS)
    settled_and_credited(services, lagged, made["id"], user_id)


def test_a_transfer_unanswered_for_its_confirmations_is_orphaned_and_found_again_by_a_rescan(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, lagging: tuple[Services, Lag]
) -> None:
    user_id, headers = user
    lagged, lag = lagging
    made, tx, block = paid_intent(client, headers, lagged, test_chain)
    record_only(services, made["id"], tx)
    lag.methods = NULL_BLOCKS | NULL_RECEIPTS
    settle(lagged, made["id"])
    test_chain.mine(CONFIRMATIONS)
    with services.uow() as connection:  # the scanner had moved on past the payment's block
        connection.execute(
            update(chain_cursors)
            .where(chain_cursors.c.chain_id == CHAIN_ID)
            .values(next_block=test_chain.w3.eth.block_number + 1)
        )
    settle(lagged, made["id"])  # unanswered while the chain grew by its confirmations: gone
    assert transfers(services, made["id"]) == [("orphaned", str(PRICE_WEI))]
    assert cursor(services) <= block  # its blocks are scanned again
    lag.methods = set()
    found = payments_crypto_scan.scan(lagged, CHAIN_ID)
    assert made["id"] in found.settle_sent
    settled_and_credited(services, lagged, made["id"], user_id)


def test_the_scanner_waits_for_a_node_without_the_receipt_instead_of_skipping_the_block(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, lagging: tuple[Services, Lag]
) -> None:
    user_id, headers = user
    lagged, lag = lagging
    made, _tx, block = paid_intent(client, headers, lagged, test_chain)  # nobody submits it
    test_chain.mine(CONFIRMATIONS + 2)
    lag.methods = NULL_RECEIPTS  # the blocks answer, their receipts not yet
    payments_crypto_scan.scan(lagged, CHAIN_ID)
    assert cursor(services) <= block  # not past the payment's block
    lag.methods = set()
    payments_crypto_scan.scan(lagged, CHAIN_ID)
    assert transfers(services, made["id"]) == [("seen", str(PRICE_WEI))]
    settled_and_credited(services, lagged, made["id"], user_id)


def test_the_scanner_reads_again_token_logs_that_came_from_another_fork(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, lagging: tuple[Services, Lag]
) -> None:
    user_id, headers = user
    lagged, lag = lagging
    made = intent(client, headers, token="TST")
    payments_crypto_scan.scan(lagged, CHAIN_ID)
    tx = test_chain.pay_token(made["deposit_address"], PRICE_TST)
    block = int(test_chain.w3.eth.get_transaction_receipt(tx)["blockNumber"])
    test_chain.mine(CONFIRMATIONS + 2)
    lag.logs_from_another_fork = True
    payments_crypto_scan.scan(lagged, CHAIN_ID)
    assert transfers(services, made["id"]) == []
    assert cursor(services) <= block
    lag.logs_from_another_fork = False
    payments_crypto_scan.scan(lagged, CHAIN_ID)
    assert transfers(services, made["id"]) == [("seen", str(PRICE_TST))]
    settle(lagged, made["id"])
    assert order_row(services, made["id"]).status == "credited"
    assert posted(services, user_id) == WELCOME + 1000 * M


def test_lateness_is_judged_by_the_block_time_of_the_payment_not_when_it_is_settled(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    mined = test_chain.w3.eth.get_block(test_chain.w3.eth.get_transaction_receipt(tx)["blockNumber"])
    expires = datetime.fromtimestamp(int(mined["timestamp"]) + 1, UTC)  # a second after the paying block
    expire_at(services, made["id"], expires)
    record_only(services, made["id"], tx)
    test_chain.mine(CONFIRMATIONS)
    window = timedelta(seconds=services.settings.CRYPTO_LATE_PAYMENT_WINDOW_S)
    settle(services, made["id"], now=expires + window + timedelta(days=1))  # settled long after
    credited = order_row(services, made["id"])
    assert credited.status == "credited"
    assert "paid after expiry" not in (credited.failure or "")
    assert posted(services, user_id) == WELCOME + 1000 * M


def test_an_underpaid_intent_expires_for_an_operator_and_is_not_settled_on_every_pass(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI // 2)
    test_chain.mine(CONFIRMATIONS)
    record_only(services, made["id"], tx)
    settle(services, made["id"])
    assert order_row(services, made["id"]).status == "pending"
    assert made["id"] not in payments_crypto_scan.scan(services, CHAIN_ID).settle_sent  # nothing new
    later = datetime.now(UTC) + timedelta(hours=2)
    first = payments_crypto_scan.scan(services, CHAIN_ID, now=later)
    assert made["id"] in first.settle_sent  # once, to list it
    expired = order_row(services, made["id"])
    assert expired.status == "expired"
    assert expired.failure.startswith("underpaid")
    settle(services, made["id"])
    assert reviews(services, made["id"]) == [("confirmed", "underpaid")]
    assert made["id"] not in payments_crypto_scan.scan(services, CHAIN_ID, now=later).settle_sent
    listed = {row["order_id"] for row in payments_crypto_review.listed(services)}
    assert made["id"] in listed
    assert posted(services, user_id) == WELCOME


def test_a_second_payment_and_other_assets_to_a_credited_address_are_listed_for_an_operator(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any, pay_settings: dict[str, str]
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    address = made["deposit_address"]
    first = test_chain.pay(address, PRICE_WEI)
    test_chain.mine(CONFIRMATIONS)
    verify(services, made["id"], first)
    settle(services, made["id"])
    wait_status(services, made["id"], "credited")
    before = payments_crypto_review.to_review(services)
    test_chain.pay(address, PRICE_WEI // 2)  # a second payment, nobody submits it
    test_chain.pay_token(address, PRICE_TST)  # an allow-listed token, not the intent's asset
    test_chain.mine(CONFIRMATIONS)
    assert made["id"] in payments_crypto_scan.scan(services, CHAIN_ID).settle_sent
    settle(services, made["id"])
    chains = [
        chain_entry(test_chain.url, test_chain=test_chain),
        chain_entry(test_chain.url, OTHER_CHAIN, test_chain),
    ]
    with services_on(pay_settings, chains) as both:  # the same address on another chain
        payments_crypto_scan.scan(both, OTHER_CHAIN)
        settle(both, made["id"])
    assert sorted(reviews(services, made["id"]), key=str) == sorted(
        [("confirmed", None), ("confirmed", "excess"), ("confirmed", "other-asset")]
        + [("confirmed", "other-asset")] * 3,  # the three, seen again on the other chain
        key=str,
    )
    order = order_row(services, made["id"])
    assert (order.status, order.amount_received) == ("credited", str(PRICE_WEI + PRICE_WEI // 2))
    assert purchases(services, made["id"]) == [("purchase", 1000 * M)]
    assert posted(services, user_id) == WELCOME + 1000 * M
    after = payments_crypto_review.to_review(services)
    assert after["excess"] == before["excess"] + 1
    assert after["other-asset"] >= before["other-asset"] + 4
    listing = operator_cli(pay_settings, "crypto", "review").splitlines()
    flagged = [json.loads(line) for line in listing if json.loads(line)["order_id"] == made["id"]]
    assert sorted(row["review"] for row in flagged) == ["excess"] + ["other-asset"] * 4
    excess = next(row["id"] for row in flagged if row["review"] == "excess")
    assert "reviewed" in operator_cli(pay_settings, "crypto", "review", "--reviewed", str(excess))
    assert payments_crypto_review.to_review(services)["excess"] == after["excess"] - 1


def test_a_reorg_deeper_than_the_confirmations_flags_the_credited_order_for_an_operator(
    client: FlaskClient, services: Services, test_chain: PayChain, user: Any
) -> None:
    user_id, headers = user
    made = intent(client, headers)
    snapshot = test_chain.chain.tester.take_snapshot()
    tx = test_chain.pay(made["deposit_address"], PRICE_WEI)
    test_chain.mine(CONFIRMATIONS)
    record_only(services, made["id"], tx)
    settle(services, made["id"])
    assert order_row(services, made["id"]).status == "credited"
    before = payments_crypto_review.to_review(services)["reorged"]
    test_chain.chain.tester.revert_to_snapshot(snapshot)  # deeper than the confirmations
    test_chain.mine(CONFIRMATIONS + 3)
    assert made["id"] in payments_crypto_scan.scan(services, CHAIN_ID).settle_sent
    settle(services, made["id"])
    assert reviews(services, made["id"]) == [("orphaned", "reorged")]
    order = order_row(services, made["id"])
    assert order.status == "credited"  # not silently taken back: an operator decides
    assert "deep reorg" in order.failure
    assert posted(services, user_id) == WELCOME + 1000 * M
    assert payments_crypto_review.to_review(services)["reorged"] == before + 1
    transfers_gauge, intents_gauge = CryptoReviewCollector(services).collect()
    samples = {sample.labels["reason"]: sample.value for sample in transfers_gauge.samples}
    assert samples["reorged"] == before + 1
    assert intents_gauge.samples[0].value == payments_crypto_review.intents_to_review(services) >= 1


def test_beats_scan_task_expires_an_intent_nobody_paid_in_the_worker(
    client: FlaskClient, services: Services, user: Any
) -> None:
    _user_id, headers = user
    made = intent(client, headers)
    expire_at(services, made["id"], datetime.now(UTC) - timedelta(minutes=1))
    services.producer.send_task("creditflow.maintenance.scan_crypto", ignore_result=True)
    expired = wait_status(services, made["id"], "expired")
    assert expired.failure == "nobody paid it in time"
