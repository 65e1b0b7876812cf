"""A small stateful server speaking PayPal's REST API: OAuth client-credentials tokens, Orders v2
create / get / capture (PayPal-Request-Id replays the first answer), capture refunds, and
`/v1/notifications/verify-webhook-signature`.

Webhook signatures: PayPal signs `transmission_id|transmission_time|webhook_id|crc32(raw body)` with
its private key; this server does the same with an HMAC of its own and checks the signature over the
`webhook_event` exactly as the verification request embeds it, so a re-serialised event fails here
as it does at PayPal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tests.support.local_http import JsonHandler, serving

SIGNING_SECRET = b"paypal-fake-signing-key"
EVENT_VALUE = re.compile(r'"webhook_event"\s*:\s*')


def transmission_sig(transmission_id: str, stamp: str, webhook_id: str, raw: bytes) -> str:
    """What the fake PayPal signs for a delivery."""
    message = f"{transmission_id}|{stamp}|{webhook_id}|{zlib.crc32(raw)}".encode()
    return base64.b64encode(hmac.new(SIGNING_SECRET, message, hashlib.sha256).digest()).decode()


class PaypalState:
    """The fake PayPal account."""

    def __init__(self, client_id: str, secret: str, webhook_id: str) -> None:
        self.client_id, self.secret, self.webhook_id = client_id, secret, webhook_id
        self.base = ""
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.replays: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.capture_status = "COMPLETED"  # what the next capture answers: COMPLETED, PENDING, DECLINED
        self.capture_calls = 0
        self.verifications: list[dict[str, Any]] = []

    @staticmethod
    def new_id(prefix: str = "") -> str:
        return prefix + secrets.token_hex(8).upper()

    # --- test side ---------------------------------------------------------------------------

    def approve(self, order_id: str) -> None:
        """The buyer approves the order on PayPal's page."""
        with self.lock:
            self.orders[order_id]["status"] = "APPROVED"

    def complete_capture(self, capture_id: str) -> dict[str, Any]:
        """A PENDING capture clears (PayPal then sends PAYMENT.CAPTURE.COMPLETED)."""
        with self.lock:
            capture = self.captures[capture_id]
            capture["status"] = "COMPLETED"
            return json.loads(json.dumps(capture))

    def event(self, event_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """A webhook event around a resource snapshot."""
        return {
            "id": self.new_id("WH-"),
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": "capture" if "CAPTURE" in event_type else "checkout-order",
            "event_type": event_type,
            "summary": event_type,
            "resource": json.loads(json.dumps(resource)),
        }

    def signed_headers(self, raw: bytes, *, webhook_id: str | None = None) -> dict[str, str]:
        """The transmission headers PayPal sends with a delivery of `raw`."""
        transmission_id, stamp = secrets.token_hex(8), _now()
        return {
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": f"{self.base}/v1/notifications/certs/CERT-1",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": stamp,
            "PAYPAL-TRANSMISSION-SIG": transmission_sig(
                transmission_id, stamp, webhook_id or self.webhook_id, raw
            ),
        }

    # --- API side ----------------------------------------------------------------------------

    def create_order(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        order_id = self.new_id()
        unit = body["purchase_units"][0]
        order = {
            "id": order_id,
            "intent": body.get("intent"),
            "status": "PAYER_ACTION_REQUIRED",
            "purchase_units": [
                {
                    "reference_id": unit.get("reference_id"),
                    "custom_id": unit.get("custom_id"),
                    "amount": unit["amount"],
                }
            ],
            "links": [
                {"rel": "self", "href": f"{self.base}/v2/checkout/orders/{order_id}", "method": "GET"},
                {
                    "rel": "payer-action",
                    "href": f"https://paypal.test/checkoutnow?token={order_id}",
                    "method": "GET",
                },
            ],
            "create_time": _now(),
        }
        self.orders[order_id] = order
        return 200, order

    def capture(self, order_id: str) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(order_id)
        if order is None:
            return 404, {"name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}]}
        if order["status"] == "COMPLETED":
            return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_ALREADY_CAPTURED"}]}
        if order["status"] != "APPROVED":
            return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_NOT_APPROVED"}]}
        self.capture_calls += 1
        unit = order["purchase_units"][0]
        capture = {
            "id": self.new_id("CAP"),
            "status": self.capture_status,
            "amount": unit["amount"],
            "custom_id": unit.get("custom_id"),
            "final_capture": True,
            "supplementary_data": {"related_ids": {"order_id": order_id}},
            "links": [{"rel": "up", "href": f"{self.base}/v2/checkout/orders/{order_id}"}],
            "create_time": _now(),
        }
        self.captures[capture["id"]] = capture
        unit["payments"] = {"captures": [capture]}
        order["status"] = "COMPLETED"
        return 201, order

    def refund(self, capture_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        capture = self.captures.get(capture_id)
        if capture is None:
            return 404, {"name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}]}
        amount = body.get("amount") or capture["amount"]
        cents = int(amount["value"].replace(".", ""))
        done = capture.setdefault("_refunded", 0) + cents
        capture["_refunded"] = done
        capture["status"] = (
            "REFUNDED" if done >= int(capture["amount"]["value"].replace(".", "")) else ("PARTIALLY_REFUNDED")
        )
        total = f"{done // 100}.{done % 100:02d}"
        return 201, {
            "id": self.new_id("REF"),
            "status": "COMPLETED",
            "amount": amount,
            "custom_id": capture.get("custom_id"),
            "seller_payable_breakdown": {
                "total_refunded_amount": {"value": total, "currency_code": amount["currency_code"]}
            },
            "links": [{"rel": "up", "href": f"{self.base}/v2/payments/captures/{capture_id}"}],
        }

    def verify(self, raw_request: str) -> tuple[int, dict[str, Any]]:
        body = json.loads(raw_request)
        found = EVENT_VALUE.search(raw_request)
        if found is None:
            return 400, {"name": "VALIDATION_ERROR", "details": [{"issue": "MISSING_REQUIRED_PARAMETER"}]}
        _event, end = json.JSONDecoder().raw_decode(raw_request, found.end())
        raw_event = raw_request[found.end() : end].encode()
        self.verifications.append(body)
        expected = transmission_sig(
            body["transmission_id"], body["transmission_time"], self.webhook_id, raw_event
        )
        good = body.get("webhook_id") == self.webhook_id and hmac.compare_digest(
            expected.encode(), str(body["transmission_sig"]).encode()  # str compare_digest is ASCII-only
        )
        return 200, {"verification_status": "SUCCESS" if good else "FAILURE"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(JsonHandler):
    state: PaypalState

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self.send_json(status, body)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.state.tokens

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        if not self._authorized():
            self._answer(
                401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
            )
            return
        with self.state.lock:
            order = self.state.orders.get(parts[-1]) if parts[:3] == ["v2", "checkout", "orders"] else None
        self._answer(200, order) if order else self._answer(
            404, {"name": "RESOURCE_NOT_FOUND", "details": []}
        )

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        state = self.state
        if path == "/v1/oauth2/token":
            expected = base64.b64encode(f"{state.client_id}:{state.secret}".encode()).decode()
            if (
                self.headers.get("Authorization") != f"Basic {expected}"
                or "grant_type=client_credentials" not in raw
            ):
                self._answer(
                    401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
                )
                return
            token = secrets.token_urlsafe(24)
            state.tokens.add(token)
            self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 32400})
            return
        if not self._authorized():
            self._answer(
                401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
            )
            return
        request_id = self.headers.get("PayPal-Request-Id")
        with state.lock:
            if request_id and (path, request_id) in state.replays:
                self._answer(*state.replays[(path, request_id)])
                return
            status, answer = self._route(path, raw)
            if request_id and status < 500:
                state.replays[(path, request_id)] = (status, json.loads(json.dumps(answer)))
        self._answer(status, answer)

    def _route(self, path: str, raw: str) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        state = self.state
        if parts == ["v2", "checkout", "orders"]:
            return state.create_order(json.loads(raw))
        if parts[:3] == ["v2", "checkout", "orders"] and parts[-1] == "capture":
            return state.capture(parts[3])
        if parts[:3] == ["v2", "payments", "captures"] and parts[-1] == "refund":
            return state.refund(parts[3], json.loads(raw or "{}"))
        if path == "/v1/notifications/verify-webhook-signature":
            return state.verify(raw)
        return 404, {"name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}]}


@contextmanager
def paypal_server(client_id: str, secret: str, webhook_id: str) -> Iterator[tuple[str, PaypalState]]:
    """Serve on a free port; yields (base URL, state)."""
    state = PaypalState(client_id, secret, webhook_id)
    with serving(type("Handler", (_Handler,), {"state": state})) as base:
        state.base = base
        yield base, state
