"""Chart of accounts and entry kinds: which legs each kind moves and how it changes a user balance."""

from __future__ import annotations

from typing import Final

# System accounts have fixed ids (seeded by the migration) and derived balances: they are never
# row-locked on the hot path; their balance is the sum of their entries.
SYSTEM_ACCOUNTS: Final = {
    "promotions": 1,
    "revenue": 2,
    "stripe": 3,
    "paypal": 4,
    "crypto": 5,
    "expiry": 6,
    "debt": 7,
    "adjustments": 8,
}
PROMOTIONS: Final = SYSTEM_ACCOUNTS["promotions"]
REVENUE: Final = SYSTEM_ACCOUNTS["revenue"]
EXPIRY: Final = SYSTEM_ACCOUNTS["expiry"]
DEBT: Final = SYSTEM_ACCOUNTS["debt"]
ADJUSTMENTS: Final = SYSTEM_ACCOUNTS["adjustments"]
RAILS: Final = ("stripe", "paypal", "crypto")

# Kinds that credit the user (counterparty is debited) and change `posted`.
CREDIT_KINDS: Final = frozenset({"grant", "purchase", "adjust_credit"})
# Kinds that debit the user and change `posted`.
DEBIT_KINDS: Final = frozenset({"capture", "lot_expiry", "refund", "clawback", "adjust_debit"})
# Pending kinds: legs user -> revenue, they change only `held` (no money moves yet).
PENDING_KINDS: Final = frozenset({"hold", "void", "expire"})
# Debt kinds move money between the debt account and a rail; they change the user's `debt`.
DEBT_KINDS: Final = frozenset({"debt", "debt_repayment"})
ALL_KINDS: Final = CREDIT_KINDS | DEBIT_KINDS | PENDING_KINDS | DEBT_KINDS


def legs(kind: str, account_id: int, counterparty_id: int) -> tuple[int, int]:
    """(debit account, credit account) of an entry of `kind` in `account_id`'s chain."""
    if kind in CREDIT_KINDS:
        return counterparty_id, account_id
    if kind == "debt":
        return DEBT, counterparty_id
    if kind == "debt_repayment":
        return counterparty_id, DEBT
    return account_id, counterparty_id


def counterparty(kind: str, account_id: int, debit_id: int, credit_id: int) -> int:
    """The system account on the other side of an entry (the rail for debt kinds)."""
    if kind in CREDIT_KINDS or kind == "debt_repayment":
        return debit_id
    return credit_id


def rail_account(rail: str) -> int:
    """The system account of a payment rail."""
    if rail not in RAILS:
        raise ValueError(f"unknown payment rail {rail!r}; expected one of {', '.join(RAILS)}")
    return SYSTEM_ACCOUNTS[rail]
