"""Payment tasks: apply provider events and verify crypto payments on `critical`; the reconciler, the
chain scanner and the auto top-up sweep on `maintenance` (beat). Tasks take ids and call use cases."""

from __future__ import annotations

from typing import Any

from orchestration import payment_events
from payments.facts import ProviderError
from workers.app import queue_task

PROCESS_MAX_RETRIES = 10


def _backoff(retries: int, cap: int = 300) -> int:
    return int(min(cap, 2 ** (retries + 1)))


@queue_task("critical", max_retries=PROCESS_MAX_RETRIES, ignore_result=True)
def process_payment_event(self: Any, event_row_id: int) -> int:
    """Apply one recorded provider event to its order and the ledger (exactly once)."""
    try:
        return len(payment_events.process(self.services, event_row_id))
    except Exception as exc:
        payment_events.note_failure(self.services, event_row_id, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ProviderError) and not exc.retryable:
            raise
        if self.request.retries >= self.max_retries:
            raise  # left `received`: the reconciler sends it again later
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc


@queue_task("maintenance", ignore_result=True)
def reconcile_payments(self: Any) -> dict[str, Any]:
    """Re-ask the providers about pending orders, re-send lost events, expire unpaid orders (beat)."""
    from orchestration import payment_reconciler

    result = payment_reconciler.sweep(self.services)
    return {"outcomes": result.outcomes, "resent_events": result.resent_events, "expired": result.expired}


@queue_task("critical", max_retries=8, ignore_result=True)
def verify_crypto_payment(self: Any, order_id: str, tx_hash: str) -> str:
    """Check a submitted transaction and record what it paid; retried while it is not mined yet."""
    from orchestration import payments_crypto

    try:
        outcome = payments_crypto.verify_submitted(self.services, order_id=order_id, tx_hash=tx_hash)
    except ProviderError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, cap=60)) from exc
    if outcome == "not mined" and self.request.retries < self.max_retries:
        raise self.retry(countdown=_backoff(self.request.retries, cap=60))
    return outcome


@queue_task("critical", max_retries=PROCESS_MAX_RETRIES, ignore_result=True)
def settle_crypto_intent(self: Any, order_id: str) -> str | None:
    """Count an intent's confirmed transfers and credit it under the written policies (at most once)."""
    from orchestration import payments_crypto_settle

    try:
        applied = payments_crypto_settle.settle(self.services, order_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            raise  # the scanner settles it again on its next pass
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, cap=60)) from exc
    return applied.status if applied else None


@queue_task("maintenance", ignore_result=True)
def scan_crypto(self: Any) -> dict[str, int]:
    """Rescan every configured chain for payments to open intents (beat)."""
    from orchestration import payments_crypto_settle

    if self.services.settings.payment_rail_missing("crypto"):
        return {}
    expired = {}
    for chain in self.services.settings.CRYPTO_CHAINS:
        try:
            expired[str(chain.chain_id)] = payments_crypto_settle.scan(self.services, chain.chain_id)
        except ProviderError as exc:
            expired[str(chain.chain_id)] = -1
            import logging

            logging.getLogger(__name__).warning("scanning chain %s failed: %s", chain.chain_id, exc)
    return expired


@queue_task("critical", ignore_result=True)
def auto_top_up(self: Any, user_id: str) -> str:
    """Refill one user from their saved card if their balance is still below the threshold."""
    from orchestration import auto_top_up as refills

    return refills.charge(self.services, user_id)


@queue_task("maintenance", ignore_result=True)
def auto_top_up_sweep(self: Any) -> int:
    """Find users below their auto top-up threshold and send each a refill (beat)."""
    from orchestration import auto_top_up as refills

    return refills.sweep(self.services)
