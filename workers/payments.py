"""Payment tasks: apply provider events, verify and settle crypto payments, refill auto top-ups on
`critical`; the reconciler, the chain scanner and the auto top-up sweep on `maintenance` (beat).
Tasks take ids and call use cases; retries follow the base task's policy (workers/base.py)."""

from __future__ import annotations

import logging
from typing import Any

from orchestration.payments import auto_top_up as refills
from orchestration.payments import events, paypal, reconciler
from orchestration.payments.crypto import intents
from orchestration.payments.crypto import scan as payments_crypto_scan
from orchestration.payments.crypto import settle as payments_crypto_settle
from payments.facts import ProviderError
from workers.app import money_step, queue_task

log = logging.getLogger(__name__)


class NotMinedYet(Exception):
    """A submitted transaction has no receipt yet: try again later."""


@money_step(retry_backoff_max=120)
def process_payment_event(self: Any, event_row_id: int) -> int:
    """Apply one recorded provider event to its order and the ledger (exactly once)."""
    try:
        return len(events.process(self.services, event_row_id))
    except Exception as exc:
        # Counted on the event, which stays `received`: the retry, or later the reconciler, applies it.
        events.note_failure(self.services, event_row_id, f"{type(exc).__name__}: {exc}")
        raise


@queue_task(
    "critical",
    max_retries=8,
    autoretry_for=(NotMinedYet, ProviderError),
    retry_backoff_max=60,
    ignore_result=True,
)
def verify_crypto_payment(self: Any, order_id: str, tx_hash: str) -> str:
    """Check a submitted transaction and record what it paid (the scanner finds it too if this gives up)."""
    outcome = intents.verify_submitted(self.services, order_id=order_id, tx_hash=tx_hash)
    if outcome == "not mined":
        raise NotMinedYet(tx_hash)
    return outcome


@money_step(retry_backoff_max=60)
def settle_crypto_intent(self: Any, order_id: str) -> str | None:
    """Count an intent's confirmed transfers and credit it under the written policies (at most once)."""
    applied = payments_crypto_settle.settle(self.services, order_id)
    return applied.status if applied else None


@queue_task(
    "critical", max_retries=5, autoretry_for=(ProviderError,), retry_backoff_max=60, ignore_result=True
)
def capture_paypal_order(self: Any, paypal_order_id: str) -> str:
    """Capture a PayPal order the buyer approved (CHECKOUT.ORDER.APPROVED); the reconciler if this fails."""
    return paypal.capture_approved(self.services, paypal_order_id)


@queue_task("critical", ignore_result=True)
def auto_top_up(self: Any, user_id: str) -> str:
    """Refill one user from their saved card if their balance is still below the threshold."""
    return refills.charge(self.services, user_id)


@queue_task("maintenance", ignore_result=True)
def reconcile_payments(self: Any) -> dict[str, Any]:
    """Re-ask the providers about pending orders, re-send lost events, expire unpaid orders (beat)."""
    result = reconciler.sweep(self.services)
    return {
        "outcomes": result.outcomes,
        "resent_events": result.resent_events,
        "expired": result.expired,
        "parked": result.parked,
    }


@queue_task("maintenance", ignore_result=True)
def scan_crypto(self: Any) -> dict[str, int]:
    """Rescan every configured chain for payments to open intents (beat); a chain that fails waits."""
    if self.services.settings.payment_rail_missing("crypto"):
        return {}
    expired: dict[str, int] = {}
    for chain in self.services.settings.CRYPTO_CHAINS:
        try:
            expired[str(chain.chain_id)] = payments_crypto_scan.scan(self.services, chain.chain_id).expired
        except ProviderError as exc:
            log.warning("scanning chain %s failed: %s", chain.chain_id, exc)
    return expired


@queue_task("maintenance", ignore_result=True)
def auto_top_up_sweep(self: Any) -> int:
    """Find users below their auto top-up threshold and send each a refill (beat)."""
    return refills.sweep(self.services)
