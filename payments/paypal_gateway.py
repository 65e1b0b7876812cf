"""PayPal Orders v2 on its documented REST API with httpx.

Not PayPal's server SDK: it has no call for verify-webhook-signature (which we must use), so the
REST calls would be split over two clients; these five endpoints are small enough to own. A webhook
is verified by posting its exact raw body back inside the verification request (re-serialising the
event would change it and fail verification).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from payments.facts import InvalidSignature, ProviderError, RailDisabled
from runtime.settings import Settings

SIGNATURE_HEADERS = {
    "auth_algo": "PAYPAL-AUTH-ALGO",
    "cert_url": "PAYPAL-CERT-URL",
    "transmission_id": "PAYPAL-TRANSMISSION-ID",
    "transmission_sig": "PAYPAL-TRANSMISSION-SIG",
    "transmission_time": "PAYPAL-TRANSMISSION-TIME",
}


def to_minor(value: str, decimals: int) -> int:
    """PayPal's decimal string ("24.00") as an int of minor units, without floats."""
    whole, _, fraction = value.strip().partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > decimals:
        raise ValueError(f"not an amount with at most {decimals} decimals: {value!r}")
    minor: int = int(whole) * 10**decimals + int((fraction or "0").ljust(decimals, "0") or "0")
    return minor


def to_value(amount: int, decimals: int) -> str:
    """Minor units as PayPal's decimal string."""
    if not decimals:
        return str(amount)
    return f"{amount // 10**decimals}.{amount % 10**decimals:0{decimals}d}"


class PaypalGateway:
    """One PayPal REST app: OAuth token (cached until shortly before it expires), orders, captures."""

    def __init__(
        self, *, client_id: str, secret: str, webhook_id: str, base_url: str, timeout: float
    ) -> None:
        missing = [
            name
            for name, value in (
                ("PAYPAL_CLIENT_ID", client_id),
                ("PAYPAL_CLIENT_SECRET", secret),
                ("PAYPAL_WEBHOOK_ID", webhook_id),
            )
            if not value.strip()
        ]
        if missing:
            raise RailDisabled("paypal", missing)
        self.webhook_id = webhook_id
        self._auth = (client_id, secret)
        self._http = httpx.Client(base_url=base_url, timeout=timeout)
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def create_service(cls, settings: Settings) -> PaypalGateway:
        """Built from settings; RailDisabled when a secret is missing."""
        return cls(
            client_id=settings.PAYPAL_CLIENT_ID,
            secret=settings.PAYPAL_CLIENT_SECRET,
            webhook_id=settings.PAYPAL_WEBHOOK_ID,
            base_url=settings.PAYPAL_API_BASE,
            timeout=settings.PAYMENT_HTTP_TIMEOUT_S,
        )

    def _access_token(self) -> str:
        with self._lock:
            if self._token is None or self._token[1] < time.monotonic():
                answer = self._send(
                    "POST",
                    "/v1/oauth2/token",
                    auth=self._auth,
                    data={"grant_type": "client_credentials"},
                    bearer=False,
                )
                self._token = (answer["access_token"], time.monotonic() + int(answer["expires_in"]) - 60)
            return self._token[0]

    def _send(
        self, method: str, path: str, *, bearer: bool = True, request_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if bearer:
            headers["Authorization"] = f"Bearer {self._access_token()}"
        if request_id:
            headers["PayPal-Request-Id"] = request_id  # a retry answers the first result
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(f"paypal: {exc}", retryable=True) from exc
        if response.status_code == 401 and bearer:
            self._token = None
        if response.status_code >= 400:
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            name = body.get("name") or body.get("error")
            issue = (body.get("details") or [{}])[0].get("issue")
            detail = issue or body.get("message") or response.text[:200]
            raise ProviderError(
                f"paypal: {response.status_code} {name}: {detail}",
                retryable=response.status_code >= 500 or response.status_code == 429,
                code=name,
                status=response.status_code,
                issue=issue,
            )
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    def create_order(
        self,
        *,
        order_id: str,
        amount: int,
        currency: str,
        decimals: int,
        title: str,
        return_url: str,
        cancel_url: str,
    ) -> dict[str, Any]:
        """A CAPTURE-intent order for one of ours (our id in reference_id and custom_id)."""
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": order_id,
                    "custom_id": order_id,
                    "description": title,
                    "amount": {"currency_code": currency, "value": to_value(amount, decimals)},
                }
            ],
            "payment_source": {
                "paypal": {"experience_context": {"return_url": return_url, "cancel_url": cancel_url}}
            },
        }
        return self._send("POST", "/v2/checkout/orders", json=body, request_id=f"create:{order_id}")

    def capture(self, paypal_order_id: str, *, request_id: str) -> dict[str, Any]:
        """Capture an approved order; the same request id returns the first capture, never a second."""
        return self._send(
            "POST",
            f"/v2/checkout/orders/{paypal_order_id}/capture",
            json={},
            request_id=request_id,
            headers={"Prefer": "return=representation"},
        )

    def order(self, paypal_order_id: str) -> dict[str, Any]:
        """An order with its captures, as PayPal has it now (the reconciler's question)."""
        return self._send("GET", f"/v2/checkout/orders/{paypal_order_id}")

    def refund(
        self, capture_id: str, *, amount: int, currency: str, decimals: int, request_id: str, note: str = ""
    ) -> dict[str, Any]:
        """Refund part or all of a capture (`note` is shown to the payer)."""
        body: dict[str, Any] = {"amount": {"value": to_value(amount, decimals), "currency_code": currency}}
        if note:
            body["note_to_payer"] = note[:255]
        return self._send(
            "POST",
            f"/v2/payments/captures/{capture_id}/refund",
            json=body,
            request_id=request_id,
            headers={"Prefer": "return=representation"},
        )

    def verify(self, payload: bytes, headers: dict[str, str]) -> None:
        """Ask PayPal whether this webhook (exact raw body and its transmission headers) is genuine."""
        given = {field: headers.get(header, "") for field, header in SIGNATURE_HEADERS.items()}
        if not all(given.values()):
            raise InvalidSignature("PayPal transmission headers are missing")
        import json

        head = json.dumps({**given, "webhook_id": self.webhook_id})
        raw = payload.decode()  # the caller checked it is UTF-8 (webhook_text)
        body = head[:-1] + ', "webhook_event": ' + raw + "}"  # the event exactly as it came
        try:
            answer = self._send(
                "POST",
                "/v1/notifications/verify-webhook-signature",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except ProviderError as exc:
            if exc.retryable:
                raise
            raise InvalidSignature(str(exc)) from exc
        if answer.get("verification_status") != "SUCCESS":
            raise InvalidSignature("PayPal did not verify the signature")
