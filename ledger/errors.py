"""Ledger errors: each class carries a stable machine `code` the API maps to a problem type."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every ledger refusal."""

    code = "ledger_error"

    def as_dict(self) -> dict[str, object]:
        """Machine-readable fields for an API problem document."""
        return {"code": self.code, "detail": str(self)}


class AccountNotFound(LedgerError):
    """The user has no ledger account yet (call ensure_user_account first)."""

    code = "account_not_found"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"no ledger account for user {user_id!r}")
        self.user_id = user_id


class InsufficientCredits(LedgerError):
    """Available credits (posted - held) are below what the operation needs."""

    code = "insufficient_credits"

    def __init__(self, available: int, required: int) -> None:
        super().__init__(f"available {available} < required {required} micro-credits")
        self.available = available
        self.required = required

    def as_dict(self) -> dict[str, object]:
        """Adds `available` and `required` (micro-credits)."""
        return {**super().as_dict(), "available": self.available, "required": self.required}


class IdempotencyConflict(LedgerError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str, field: str) -> None:
        super().__init__(f"idempotency key {key!r} was used with a different {field}")
        self.key = key
        self.field = field

    def as_dict(self) -> dict[str, object]:
        """Adds the differing `field`."""
        return {**super().as_dict(), "field": self.field}


class HoldNotFound(LedgerError):
    """No hold with this id."""

    code = "hold_not_found"

    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id!r}")
        self.hold_id = hold_id


class HoldAlreadyResolved(LedgerError):
    """The hold was already captured, voided or expired; code says which."""

    def __init__(self, hold_id: str, status: str) -> None:
        self.code = {"captured": "already_captured", "voided": "already_voided"}.get(status, "expired")
        super().__init__(f"hold {hold_id!r} is {status}")
        self.hold_id = hold_id
        self.status = status


class CaptureExceedsHold(LedgerError):
    """A capture asked for more than the hold reserved."""

    code = "capture_exceeds_hold"

    def __init__(self, hold_id: str, held: int, requested: int) -> None:
        super().__init__(f"capture of {requested} exceeds hold {hold_id!r} of {held}")
        self.hold_id = hold_id
        self.held = held
        self.requested = requested


class InvalidAmount(LedgerError):
    """An amount is not a positive int of micro-credits (or is otherwise out of range)."""

    code = "invalid_amount"


class EntryNotFound(LedgerError):
    """No ledger entry with this id."""

    code = "entry_not_found"


class NotSealed(LedgerError):
    """The entry is not in a checkpoint yet; a proof exists after the next seal."""

    code = "not_sealed"
