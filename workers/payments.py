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
