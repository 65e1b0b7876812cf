"""The gateway of each rail, built from settings once per process; RailDisabled while a secret is missing."""

from __future__ import annotations

from typing import Any

from orchestration.services import Services
from payments.facts import RailDisabled

_built: dict[tuple[int, str], Any] = {}


def _gateway(services: Services, rail: str) -> Any:
    missing = services.settings.payment_rail_missing(rail)
    if missing:
        raise RailDisabled(rail, missing)  # checked on every call: never a cached "on"
    key = (id(services.settings), rail)
    if key not in _built:
        if rail == "stripe":
            from payments.stripe_gateway import StripeGateway

            _built[key] = StripeGateway.create_service(services.settings)
        elif rail == "paypal":
            from payments.paypal_gateway import PaypalGateway

            _built[key] = PaypalGateway.create_service(services.settings)
        else:
            from payments.crypto_gateway import CryptoGateway

            _built[key] = CryptoGateway.create_service(services.settings)
    return _built[key]


def stripe(services: Services) -> Any:
    """The Stripe gateway (payments.stripe_gateway.StripeGateway)."""
    return _gateway(services, "stripe")


def paypal(services: Services) -> Any:
    """The PayPal gateway (payments.paypal_gateway.PaypalGateway)."""
    return _gateway(services, "paypal")


def crypto(services: Services) -> Any:
    """The chains gateway (payments.crypto_gateway.CryptoGateway)."""
    return _gateway(services, "crypto")
