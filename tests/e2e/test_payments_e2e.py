"""Buying a pack with each rail over HTTP, on `creditflow dev`'s default stack (embedded SQLite and Redis,
beat, both worker pools), against local Stripe and PayPal servers and an eth-tester chain on JSON-RPC."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ledger.amounts import parse_credits
from tests.integration.payments.conftest import (
    CHAIN_ID,
    CONFIRMATIONS,
    MNEMONIC,
    PACKS,
    PAYPAL,
    PRICE_WEI,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    PayChain,
)
from tests.support.chain_rpc import chain_rpc
from tests.support.paypal_server import paypal_server
from tests.support.processes import child_env, creditflow, free_port, stop, wait_http
from tests.support.sse import frames, open_stream
from tests.support.stripe_server import sign, stripe_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
EMBEDDED = {"DATABASE_URL": "", "REDIS_URL": "", "BROKER_URL": "", "RESULT_BACKEND_URL": ""}


def _wait(predicate: Any, what: str, timeout: float = 90) -> Any:
    return wait_for(predicate, timeout=timeout, what=what, every=0.3)


def test_buy_a_pack_with_each_rail_over_http(tmp_path: Path) -> None:
    with (
        stripe_server(STRIPE_KEY) as (stripe_base, stripe_state),
        paypal_server(
            PAYPAL["PAYPAL_CLIENT_ID"], PAYPAL["PAYPAL_CLIENT_SECRET"], PAYPAL["PAYPAL_WEBHOOK_ID"]
        ) as (paypal_base, paypal_state),
        chain_rpc() as (rpc_url, raw_chain),
    ):
        chain = PayChain(rpc_url, raw_chain)
        port = free_port()
        env = child_env(
            **EMBEDDED,
            VAR_DIR=str(tmp_path / "var"),
            CREDITFLOW_ENV="development",
            SSE_HEARTBEAT_S="1",
            PAYMENT_PACKS=json.dumps(PACKS),
            STRIPE_SECRET_KEY=STRIPE_KEY,
            STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
            STRIPE_API_BASE=stripe_base,
            PAYPAL_API_BASE=paypal_base,
            **PAYPAL,
            CRYPTO_HD_KEY=MNEMONIC,
            CRYPTO_CHAINS=json.dumps(
                [
                    {
                        "chain_id": CHAIN_ID,
                        "rpc_url": rpc_url,
                        "confirmations": CONFIRMATIONS,
                        "tokens": {"TST": chain.token.address},
                    }
                ]
            ),
            CRYPTO_SCAN_INTERVAL_S="1",
        )
        log = tmp_path / "dev.log"
        dev = creditflow(
            "dev", "--port", str(port), "--flower-port", str(free_port()), env=env, cwd=tmp_path, log=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", timeout=120, process=dev, log=log)
            _buy_with_each_rail(base, tmp_path / "var", stripe_state, paypal_state, chain)
        finally:
            stop(dev, sig=signal.SIGINT, timeout=40)


def _buy_with_each_rail(base: str, var: Path, stripe_state: Any, paypal_state: Any, chain: PayChain) -> None:
    now = int(time.time())
    secret = (var / "jwt_secret").read_text().strip()
    token = jwt.encode({"iss": "creditflow", "sub": "buyer", "iat": now, "exp": now + 900}, secret, "HS256")
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{base}/api/v1"
    packs = requests.get(f"{api}/payments/packs", timeout=30).json()["items"]
    assert {p["rail"] for p in packs[0]["prices"]} == {"stripe", "paypal", "crypto"}

    # Stripe: Checkout, paid at Stripe, fulfilled from the signed webhook (never from the redirect).
    session = requests.post(
        f"{api}/payments/stripe/checkout-sessions",
        json={"pack_id": "credits-1000"},
        headers=headers,
        timeout=30,
    ).json()
    payload = json.dumps(
        stripe_state.event("checkout.session.completed", stripe_state.pay_session(session["id"]))
    )
    hook = requests.post(
        f"{api}/payments/stripe/webhook",
        data=payload,
        timeout=30,
        headers={
            "Stripe-Signature": sign(payload, STRIPE_WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert hook.status_code == 200, hook.text

    # PayPal: order, approved by the buyer, captured.
    order = requests.post(
        f"{api}/payments/paypal/orders", json={"pack_id": "credits-1000"}, headers=headers, timeout=30
    ).json()
    paypal_state.approve(order["id"])
    captured = requests.post(
        f"{api}/payments/paypal/orders/{order['id']}/capture", headers=headers, timeout=30
    )
    assert captured.status_code == 202, captured.text

    # Crypto: an intent, paid on chain, submitted; beat's scanner sees it deep enough and it is credited.
    intent = requests.post(
        f"{api}/payments/crypto/intents",
        json={"pack_id": "credits-1000", "chain_id": CHAIN_ID},
        headers=headers,
        timeout=30,
    ).json()
    tx = chain.pay(intent["deposit_address"], PRICE_WEI)
    assert (
        requests.post(
            f"{api}/payments/crypto/intents/{intent['id']}/submit",
            json={"tx_hash": tx},
            headers=headers,
            timeout=30,
        ).status_code
        == 202
    )
    chain.mine(CONFIRMATIONS)

    def all_credited() -> bool:
        items = requests.get(f"{api}/payments", headers=headers, timeout=30).json()["items"]
        return sorted((o["rail"], o["status"]) for o in items) == [
            ("crypto", "credited"),
            ("paypal", "credited"),
            ("stripe", "credited"),
        ]

    _wait(all_credited, "three credited orders")
    balance = requests.get(f"{api}/credits/balance", headers=headers, timeout=30).json()
    assert parse_credits(balance["posted"]) == 4000 * 1_000_000  # welcome 1000 + three packs
    seen: list[dict[str, Any]] = []
    with open_stream(f"{api}/me/events", token, last_event_id="0-0", timeout=30) as stream:
        deadline = time.monotonic() + 30
        for frame in frames(stream):
            if frame.event:
                seen.append(frame.data)
            if (
                any(e["type"] == "balance" and e["posted"] == "4000" for e in seen)
                or time.monotonic() > deadline
            ):
                break
    payments = [e for e in seen if e["type"] == "payment"]
    assert sorted(e["credits"] for e in payments) == ["1000", "1000", "1000"]
    assert any(e["type"] == "balance" and e["posted"] == "4000" for e in seen)
