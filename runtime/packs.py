"""Payment settings' shapes: credit packs with a price per rail, and the chains crypto payments use."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
# Currencies without minor units (Stripe's and PayPal's zero-decimal list, the ones we'd meet).
ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "HUF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "TWD",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


class FiatPrice(BaseModel):
    """A card/wallet price in the currency's minor units (cents): 2400 USD is $24.00."""

    amount: int = Field(gt=0, lt=10**12, strict=True)
    currency: str

    @field_validator("currency")
    @classmethod
    def _iso(cls, value: str) -> str:
        if not CURRENCY.match(value):
            raise ValueError("an ISO 4217 code such as USD")
        return value.upper()

    @property
    def decimals(self) -> int:
        """Minor-unit digits of the currency."""
        return 0 if self.currency in ZERO_DECIMAL else 2


class CreditPack(BaseModel):
    """Credits sold for a price per rail; `crypto` maps "<chain id>" (native coin, in wei) or
    "<chain id>:<token symbol>" (token base units) to the exact amount to pay."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    credits: int = Field(gt=0, le=10**9, strict=True)
    name: str = ""
    stripe: FiatPrice | None = None
    paypal: FiatPrice | None = None
    crypto: dict[str, int] = Field(default_factory=dict)

    @field_validator("crypto")
    @classmethod
    def _crypto_prices(cls, value: dict[str, int]) -> dict[str, int]:
        for key, amount in value.items():
            chain, _, token = key.partition(":")
            if not chain.isdigit() or (token and not token.isalnum()):
                raise ValueError(f"crypto price keys are '<chain id>' or '<chain id>:<token>', got {key!r}")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise ValueError(f"crypto price {key!r} must be a positive integer of base units")
        return value

    @property
    def title(self) -> str:
        """What the checkout page shows."""
        return self.name or f"{self.credits} credits"


class CryptoChain(BaseModel):
    """An EVM chain we accept payments on: its RPC, confirmations, and allow-listed ERC-20 tokens."""

    chain_id: int = Field(gt=0)
    rpc_url: str
    confirmations: int = Field(12, ge=1, le=1000)
    native_symbol: str = "ETH"
    tokens: dict[str, str] = Field(default_factory=dict, description="symbol -> contract address")

    @field_validator("rpc_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("rpc_url must be an http(s) URL")
        return value

    @field_validator("tokens")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for symbol, address in value.items():
            if not symbol.isalnum() or not ADDRESS.match(address):
                raise ValueError(f"token {symbol!r} needs an alphanumeric symbol and a 0x address")
        return value


DEFAULT_PACKS = [
    CreditPack(
        id="credits-1000",
        credits=1000,
        stripe=FiatPrice(amount=2400, currency="USD"),
        paypal=FiatPrice(amount=2400, currency="USD"),
        crypto={"1": 8_000_000_000_000_000, "1:USDC": 24_000_000},
    ),
    CreditPack(
        id="credits-5000",
        credits=5000,
        stripe=FiatPrice(amount=9900, currency="USD"),
        paypal=FiatPrice(amount=9900, currency="USD"),
        crypto={"1": 33_000_000_000_000_000, "1:USDC": 99_000_000},
    ),
]


class PaymentPacks(BaseModel):
    """The pack list; ids unique."""

    packs: list[CreditPack]

    @model_validator(mode="after")
    def _unique(self) -> PaymentPacks:
        ids = [pack.id for pack in self.packs]
        if len(ids) != len(set(ids)):
            raise ValueError("pack ids must be unique")
        return self
