"""Values the ledger returns: plain frozen dataclasses, amounts in micro-credits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

MICRO = 1_000_000  # micro-credits per credit
WELCOME_GRANT = 1000 * MICRO


class Balance(NamedTuple):
    """A user's balance: `available = posted - held`."""

    posted: int
    held: int
    available: int


@dataclass(frozen=True)
class Account:
    """A user's credit account with its cached balances and chain head."""

    id: int
    user_id: str
    posted: int
    held: int
    debt: int
    promo: int
    seq: int
    created: bool = False  # True when this call created it (and the welcome grant)

    @property
    def available(self) -> int:
        """Posted minus held."""
        return self.posted - self.held


@dataclass(frozen=True)
class Hold:
    """A pending (or resolved) reservation of credits for a job."""

    id: str
    account_id: int
    amount: int
    status: str
    expires_at: datetime
    reference: str | None
    idempotency_key: str
    entry_id: int | None = None
    captured: int = 0


@dataclass(frozen=True)
class Settlement:
    """How a hold ended: captured (with the released remainder), voided or expired."""

    hold_id: str
    status: str
    captured: int
    released: int
    entry_id: int | None
    # The owner's balance right after this call moved it; None when it replayed an earlier one.
    balance: Balance | None = None
    entry_hash: bytes | None = None  # the resolving entry's chain hash; None on a replay


@dataclass(frozen=True)
class Receipt:
    """The result of a grant, purchase, refund, clawback or adjustment (returned again on replay)."""

    operation: str
    idempotency_key: str
    user_id: str
    amount: int
    entry_ids: tuple[int, ...]
    lot_id: int | None = None
    to_debt: int = 0  # the part of a refund/clawback the balance could not cover
    debt_repaid: int = 0  # the part of a purchase that repaid earlier debt


@dataclass(frozen=True)
class Lot:
    """A promotional lot; `remaining` is what is left to spend or to expire."""

    id: int
    amount: int
    remaining: int
    priority: int
    expires_at: datetime | None
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint: Merkle root over a batch of entries, chained to the previous one."""

    id: int
    number: int
    prev_hash: bytes
    root: bytes
    size: int
    created_at: datetime
    algorithm: str
    key_id: str
    signature: bytes
    hash: bytes


@dataclass
class VerifyReport:
    """What verify() found; `ok` only when `problems` is empty."""

    ok: bool = True
    entries_checked: int = 0
    checkpoints_checked: int = 0
    first_bad_entry: int | None = None
    problems: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_entry": self.first_bad_entry,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
        }
