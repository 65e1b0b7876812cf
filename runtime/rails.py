"""The payment rails' settings (packs, Stripe, PayPal, crypto, auto top-up): each rail is off until its
secrets are set. Part of `runtime.settings.Settings`, which inherits them."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings

from runtime.packs import DEFAULT_PACKS, CreditPack, CryptoChain, PaymentPacks


class RailSettings(BaseSettings):
    """The settings of the payment rails (payments/, orchestration/payments/)."""

    PAYMENT_PACKS: str = ""  # JSON list of packs (see payment_packs); empty: DEFAULT_PACKS
    PAYMENT_RETURN_URL: str = "http://127.0.0.1:8000/"
    PAYMENT_ORDER_TTL_S: int = Field(24 * 3600, ge=600)
    PAYMENT_HTTP_TIMEOUT_S: float = Field(20.0, gt=0, le=120)
    RECONCILE_INTERVAL_S: float = Field(300.0, gt=0)
    RECONCILE_MIN_AGE_S: int = Field(60, ge=0)
    STRIPE_SECRET_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: str = ""
    STRIPE_API_BASE: str = "https://api.stripe.com"
    PAYPAL_CLIENT_ID: str = ""
    PAYPAL_CLIENT_SECRET: str = ""
    PAYPAL_WEBHOOK_ID: str = ""
    PAYPAL_API_BASE: str = "https://api-m.paypal.com"
    CRYPTO_HD_KEY: str = ""
    CRYPTO_CHAINS: list[CryptoChain] = Field(default_factory=list)
    CRYPTO_INTENT_TTL_S: int = Field(3600, ge=60)
    CRYPTO_LATE_PAYMENT_WINDOW_S: int = Field(7 * 24 * 3600, ge=0)
    CRYPTO_SCAN_INTERVAL_S: float = Field(30.0, gt=0)
    AUTO_TOP_UP_INTERVAL_S: float = Field(30.0, gt=0)
    AUTO_TOP_UP_MAX_FAILURES: int = Field(3, ge=1, le=20)

    @field_validator("PAYMENT_PACKS")
    @classmethod
    def _packs(cls, value: str) -> str:
        if value.strip():
            try:
                PaymentPacks.model_validate_json(f'{{"packs": {value}}}')
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"][1:])
                raise ValueError(f"{where or 'packs'}: {first['msg']}") from None
        return value

    @field_validator("CRYPTO_CHAINS")
    @classmethod
    def _chains(cls, value: list[CryptoChain]) -> list[CryptoChain]:
        if len({chain.chain_id for chain in value}) != len(value):
            raise ValueError("chain ids must be unique")
        return value

    @field_validator("STRIPE_API_BASE", "PAYPAL_API_BASE", "PAYMENT_RETURN_URL")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


    def payment_rail_missing(self, rail: str) -> list[str]:
        """The settings a payment rail still lacks; empty when it is on (a rail never runs unsigned)."""
        needed = {
            "stripe": ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"),
            "paypal": ("PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET", "PAYPAL_WEBHOOK_ID"),
            "crypto": ("CRYPTO_HD_KEY", "CRYPTO_CHAINS"),
        }[rail]
        return [name for name in needed if not getattr(self, name) or not str(getattr(self, name)).strip()]

    @property
    def payment_packs(self) -> list[CreditPack]:
        """The credit packs on sale (PAYMENT_PACKS, else the defaults)."""
        return list(_parse_packs(self.PAYMENT_PACKS))

    def pack(self, pack_id: str) -> CreditPack | None:
        """The credit pack with this id, if it is sold."""
        return next((pack for pack in self.payment_packs if pack.id == pack_id), None)

    def chain(self, chain_id: int) -> CryptoChain | None:
        """The configured chain with this id, if any."""
        return next((chain for chain in self.CRYPTO_CHAINS if chain.chain_id == chain_id), None)


@lru_cache(maxsize=8)
def _parse_packs(text: str) -> tuple[CreditPack, ...]:
    if not text.strip():
        return tuple(DEFAULT_PACKS)
    return tuple(PaymentPacks.model_validate_json(f'{{"packs": {text}}}').packs)

