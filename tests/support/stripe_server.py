"""A small stateful server speaking Stripe's HTTP API for the endpoints creditflow uses.

The real `stripe` library is the client: form-encoded bodies with bracketed keys, a Bearer secret
key, Idempotency-Key replays, Stripe's JSON objects and error shapes (`{"error": {type, code,
message}}`, card errors as 402 naming the PaymentIntent). localstripe (PyPI) was tried first: it has
no Checkout Sessions. Test code plays Stripe's side with `pay_session`, `refund`, `dispute` and
`event`, and signs webhook payloads exactly as Stripe does (`sign`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.local_http import JsonHandler, serving

API_VERSION = "2025-09-30.clover"
# Test payment methods, as Stripe's test cards behave off-session.
CARD_OK = "pm_card_visa"
CARD_SCA = "pm_card_authenticationRequired"
CARD_DECLINED = "pm_card_chargeDeclined"


def sign(payload: str | bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for a payload: t=<unix>,v1=HMAC-SHA256(secret, "t.payload")."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's `a[b][0][c]=v` form keys as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node: Any = root
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                node[part] = value
                break
            child_is_list = following.isdigit()
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append([] if child_is_list else {})
                node = node[index]
            else:
                node = node.setdefault(part, [] if child_is_list else {})
    return root


class StripeState:
    """Everything the fake Stripe account holds."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.search_offered = True  # Stripe's search is not offered in every region
        # Idempotency-Key -> (the request's body, its answer): replayed for the same body, refused for another
        self.idempotent: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_next: list[int] = []  # statuses to answer instead of the next requests
        # POSTs carried out whose answers are then lost on the way back (answered 500), as on a timeout
        self.lose_answers = 0

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(12)}"

    # --- what the API does -------------------------------------------------------------------

    def create_session(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        item = body["line_items"][0]
        price = item["price_data"]
        session_id = self.new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": body.get("mode", "payment"),
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(price["unit_amount"]) * int(item.get("quantity", 1)),
            "currency": price["currency"],
            "client_reference_id": body.get("client_reference_id"),
            "metadata": body.get("metadata", {}),
            "payment_intent": None,
            "customer": body.get("customer"),
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "success_url": body.get("success_url"),
            "cancel_url": body.get("cancel_url"),
            "created": int(time.time()),
            "livemode": False,
            "payment_intent_data": body.get("payment_intent_data", {}),
            "customer_creation": body.get("customer_creation"),
        }
        self.sessions[session_id] = session
        return 200, self._public_session(session)

    @staticmethod
    def _public_session(session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if k not in ("payment_intent_data", "customer_creation")}

    def create_customer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        customer = {
            "id": self.new_id("cus"),
            "object": "customer",
            "metadata": body.get("metadata", {}),
            "created": int(time.time()),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return 200, customer

    def expire_session(self, session_id: str) -> tuple[int, dict[str, Any]]:
        session = self.sessions.get(session_id)
        if session is None:
            return self._missing("checkout.session", session_id)
        if session["status"] != "open":
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "checkout_session_not_open",
                    "message": f"This Checkout Session is {session['status']}.",
                }
            }
        session["status"] = "expired"
        return 200, self._public_session(session)

    def create_intent(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self._new_intent(
            int(body["amount"]),
            body["currency"],
            body.get("metadata", {}),
            customer=body.get("customer"),
            payment_method=body.get("payment_method"),
        )
        method = body.get("payment_method")
        if method == CARD_SCA:
            intent["status"] = "requires_action"
            return 402, self._card_error(
                "authentication_required", "This payment requires authentication.", intent
            )
        if method != CARD_OK:
            intent["status"] = "requires_payment_method"
            return 402, self._card_error("card_declined", "Your card was declined.", intent)
        self._succeed(intent)
        return 200, intent

    def search_intents(self, query: str) -> tuple[int, dict[str, Any]]:
        """Stripe's search, for the one clause creditflow sends: metadata['key']:'value'."""
        if not self.search_offered:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "feature_not_enabled",
                    "message": "Search is not available for this account.",
                }
            }
        clause = re.fullmatch(r"metadata\['([^']+)'\]:'([^']*)'", query.strip())
        if clause is None:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "parameter_invalid_string",
                    "message": f"The query {query!r} is not supported here.",
                    "param": "query",
                }
            }
        key, value = clause.groups()
        found = [intent for intent in self.intents.values() if intent["metadata"].get(key) == value]
        return 200, {
            "object": "search_result",
            "data": found,
            "has_more": False,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }

    @staticmethod
    def _card_error(code: str, message: str, intent: dict[str, Any]) -> dict[str, Any]:
        return {"error": {"type": "card_error", "code": code, "message": message, "payment_intent": intent}}

    def create_refund(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(body.get("payment_intent", ""))
        if intent is None or intent.get("latest_charge") is None:
            return self._missing("payment_intent", body.get("payment_intent", ""))
        charge = self.charges[intent["latest_charge"]]
        amount = int(body.get("amount") or charge["amount"] - charge["amount_refunded"])
        if amount > charge["amount"] - charge["amount_refunded"]:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": "Refund amount is greater than unrefunded amount on charge.",
                }
            }
        refund = self.refund(intent["id"], amount)[1]
        refund.update(reason=body.get("reason"), metadata=body.get("metadata", {}))
        return 200, refund

    # --- what happens at Stripe (test code calls these) --------------------------------------

    def _new_intent(
        self,
        amount: int,
        currency: str,
        metadata: dict[str, Any],
        *,
        customer: str | None = None,
        payment_method: str | None = None,
    ) -> dict[str, Any]:
        intent = {
            "id": self.new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "status": "requires_payment_method",
            "metadata": metadata,
            "customer": customer,
            "payment_method": payment_method,
            "latest_charge": None,
            "created": int(time.time()),
            "livemode": False,
        }
        self.intents[intent["id"]] = intent
        return intent

    def _succeed(self, intent: dict[str, Any]) -> dict[str, Any]:
        charge = {
            "id": self.new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "paid": True,
            "refunded": False,
            "status": "succeeded",
            "metadata": {},
            "created": int(time.time()),
            "livemode": False,
        }
        self.charges[charge["id"]] = charge
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"])
        return charge

    def pay_session(
        self,
        session_id: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
        asynchronous: bool = False,
    ) -> dict[str, Any]:
        """The buyer pays at Checkout (with `asynchronous`, the payment settles later: call settle_async)."""
        with self.lock:
            session = self.sessions[session_id]
            if amount is not None:
                session["amount_total"] = amount
            if currency is not None:
                session["currency"] = currency
            intent_data = session["payment_intent_data"]
            customer = session["customer"]
            if customer is None and session.get("customer_creation") == "always":
                customer = session["customer"] = self.new_id("cus")
            intent = self._new_intent(
                session["amount_total"],
                session["currency"],
                dict(intent_data.get("metadata", {})),
                customer=customer,
                payment_method=CARD_OK,
            )
            session.update(status="complete", payment_intent=intent["id"])
            if asynchronous:
                intent["status"] = "processing"
            else:
                self._succeed(intent)
                session["payment_status"] = "paid"
            return self._public_session(session)

    def settle_async(self, session_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        """An asynchronous payment (bank debit) succeeds or fails days later."""
        with self.lock:
            session = self.sessions[session_id]
            intent = self.intents[session["payment_intent"]]
            if succeeded:
                self._succeed(intent)
                session["payment_status"] = "paid"
            else:
                intent["status"] = "requires_payment_method"
            return self._public_session(session)

    def refund(self, intent_id: str, amount: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """A refund (from the dashboard or the API): returns (charge after it, the refund)."""
        intent = self.intents[intent_id]
        charge = self.charges[intent["latest_charge"]]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = {
            "id": self.new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": intent_id,
            "currency": charge["currency"],
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return dict(charge), refund

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> dict[str, Any]:
        """A refund the card network could not deliver: its amount is no longer refunded on the charge."""
        with self.lock:
            refund = self.refunds[refund_id]
            charge = self.charges[refund["charge"]]
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            refund.update(status="failed", failure_reason=reason)
            return dict(refund)

    def dispute(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """A chargeback on the payment's charge."""
        charge = self.charges[self.intents[intent_id]["latest_charge"]]
        return {
            "id": self.new_id("du"),
            "object": "dispute",
            "amount": amount or charge["amount"],
            "charge": charge["id"],
            "payment_intent": intent_id,
            "currency": charge["currency"],
            "status": "needs_response",
        }

    @staticmethod
    def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A webhook event wrapping a snapshot of `obj`."""
        return {
            "id": StripeState.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": event_type,
            "livemode": False,
            "data": {"object": json.loads(json.dumps(obj))},
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }

    @staticmethod
    def _missing(kind: str, object_id: str) -> tuple[int, dict[str, Any]]:
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"No such {kind}: '{object_id}'",
                "param": "id",
            }
        }

    # --- routing ---------------------------------------------------------------------------

    def handle(  # noqa: PLR0911 - one return per route
        self, method: str, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        with self.lock:
            if method == "POST" and parts == ["v1", "checkout", "sessions"]:
                return self.create_session(body)
            if method == "POST" and parts[:3] == ["v1", "checkout", "sessions"] and parts[-1] == "expire":
                return self.expire_session(parts[3])
            if method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
                found = self.sessions.get(parts[3])
                return (
                    (200, self._public_session(found))
                    if found
                    else self._missing("checkout.session", parts[3])
                )
            if method == "POST" and parts == ["v1", "payment_intents"]:
                return self.create_intent(body)
            if method == "GET" and parts == ["v1", "payment_intents", "search"]:
                return self.search_intents(str(body.get("query", "")))
            if method == "GET" and parts[:2] == ["v1", "payment_intents"] and len(parts) == 3:
                found = self.intents.get(parts[2])
                return (200, found) if found else self._missing("payment_intent", parts[2])
            if method == "GET" and parts[:2] == ["v1", "charges"] and len(parts) == 3:
                found = self.charges.get(parts[2])
                return (200, found) if found else self._missing("charge", parts[2])
            if method == "POST" and parts == ["v1", "customers"]:
                return self.create_customer(body)
            if method == "POST" and parts == ["v1", "refunds"]:
                return self.create_refund(body)
        return 404, {
            "error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"}
        }


class _Handler(JsonHandler):
    state: StripeState

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self.send_json(status, body, **{"Request-Id": "req_" + secrets.token_hex(8)})

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        body = _nest(parse_qsl(raw or split.query, keep_blank_values=True))
        state = self.state
        state.requests.append((method, split.path, body))
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._answer(
                401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
            )
            return
        if state.fail_next:
            self._answer(state.fail_next.pop(0), {"error": {"type": "api_error", "message": "injected"}})
            return
        key = self.headers.get("Idempotency-Key")
        if method == "POST" and key and key in state.idempotent:
            first, status, answer = state.idempotent[key]
            if first != body:
                status, answer = 400, {
                    "error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                    }
                }
        else:
            status, answer = state.handle(method, split.path, body)
            if method == "POST" and key and status < 500:
                state.idempotent[key] = (body, status, answer)
        if method == "POST" and state.lose_answers > 0:
            state.lose_answers -= 1
            status, answer = 500, {"error": {"type": "api_error", "message": "the answer was lost"}}
        self._answer(status, answer)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


@contextmanager
def stripe_server(api_key: str = "sk_test_creditflow") -> Iterator[tuple[str, StripeState]]:
    """Serve on a free port; yields (base URL, state)."""
    state = StripeState(api_key)
    with serving(type("Handler", (_Handler,), {"state": state})) as base:
        yield base, state
