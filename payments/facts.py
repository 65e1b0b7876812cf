"""What a provider said about a payment, in our terms, and the errors gateways raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FactKind = Literal[
    "paid",
    "failed",
    "expired",
    "refunded",
    "refund_failed",
    "dispute_opened",
    "dispute_withdrawn",
    "dispute_reinstated",
    "dispute_closed",
    "dispute_won",
    "fraud_warning",
    "pending",
]


class RailDisabled(RuntimeError):
    """A rail whose secrets are not configured: it refuses everything rather than run unsigned."""

    def __init__(self, rail: str, missing: list[str]) -> None:
        super().__init__(f"the {rail} rail is off: {', '.join(missing)} not set")
        self.rail = rail
        self.missing = missing


class InvalidSignature(ValueError):
    """A webhook whose signature is missing, wrong or too old."""


class MalformedWebhook(ValueError):
    """A webhook body that is not the provider's JSON (not UTF-8, not an object) or not meant for this
    account (a live event for a test key): refused, unrecorded; `kind` names the problem."""

    def __init__(self, message: str, *, kind: str = "malformed-webhook") -> None:
        super().__init__(message)
        self.kind = kind


class ProviderError(RuntimeError):
    """A provider call failed; `retryable` when trying again later may succeed (network, 5xx, 429).

    `status` is the provider's HTTP status when it answered (a 4xx names a request it will never accept),
    `issue` its finer reason when it gives one (PayPal's `ORDER_NOT_APPROVED`)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str | None = None,
        status: int | None = None,
        issue: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.status = status
        self.issue = issue


@dataclass(frozen=True)
class PaymentFact:
    """One thing a provider reports about one payment.

    `amount` is in the provider's minor units: what was paid (`paid`), the cumulative refunded total
    (`refunded`), the disputed amount (`dispute_*`). `key` names this movement of money so a second
    report of it is the same ledger operation (a refund's cumulative total, a dispute's id)."""

    kind: FactKind
    order_id: str | None
    provider_ref: str | None = None
    payment_ref: str | None = None
    amount: int = 0
    currency: str = ""
    key: str = ""
    customer_ref: str | None = None
    payment_method_ref: str | None = None
    detail: str = ""
