"""The credit ledger: double entry, two-phase holds, promotional lots, hash chain, signed checkpoints.

Pure Python + SQLAlchemy. Every operation runs inside the caller's session and transaction and
never commits. Amounts are ints of micro-credits (1 credit = 1_000_000).
"""

from ledger.accounts import account, balance, ensure_user_account, system_balances
from ledger.chart import RAILS, SYSTEM_ACCOUNTS
from ledger.errors import (
    AccountNotFound,
    CaptureExceedsHold,
    EntryNotFound,
    HoldAlreadyResolved,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    LedgerError,
    NotSealed,
)
from ledger.funding import adjust, clawback, purchase, refund
from ledger.history import InvalidCursor, resolution, transactions
from ledger.holds import capture, due_holds, expire_hold, expire_holds, get_hold, hold, void
from ledger.lots import accounts_with_expired_lots, expire_lots, expire_lots_of, grant, lots_of
from ledger.models import (
    MICRO,
    WELCOME_GRANT,
    Account,
    Balance,
    Checkpoint,
    Hold,
    Lot,
    Receipt,
    Settlement,
    VerifyReport,
)
from ledger.sealing import list_checkpoints, proof, seal, verify_proof
from ledger.signing import Signer, Verifier, signer_from_key, verifier_from_key
from ledger.verification import verify

__all__ = [
    "MICRO", "RAILS", "SYSTEM_ACCOUNTS", "WELCOME_GRANT",
    "Account", "AccountNotFound", "Balance", "CaptureExceedsHold", "Checkpoint", "EntryNotFound",
    "Hold", "HoldAlreadyResolved", "HoldNotFound", "IdempotencyConflict", "InsufficientCredits",
    "InvalidAmount", "InvalidCursor", "LedgerError", "Lot", "NotSealed", "Receipt", "Settlement", "Signer",
    "Verifier", "VerifyReport",
    "account", "accounts_with_expired_lots", "adjust", "balance", "capture", "clawback", "due_holds",
    "ensure_user_account", "expire_hold", "expire_holds", "expire_lots", "expire_lots_of", "get_hold",
    "grant", "hold", "list_checkpoints", "lots_of", "proof", "purchase", "refund", "resolution", "seal",
    "signer_from_key", "system_balances", "transactions", "verifier_from_key", "verify", "verify_proof",
    "void",
]
