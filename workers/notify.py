"""Notification tasks on the `notify` queue (a threads pool: deliveries wait on receivers, never in a job's
path): fan a committed notification out, attempt a webhook delivery, send an email, and beat's sweep."""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestration.notify import delivery, fanout, sweep
from workers.app import queue_task

# A retry this soon is sent with a countdown; a later one waits for the sweep, as a long countdown on
# Redis would outlive the broker's visibility timeout.
COUNTDOWN_MAX_S = 60


@queue_task("notify", ignore_result=True)
def fan_out(self: Any, notification_ids: list[str]) -> int:
    """Make and send the deliveries of committed notifications (each at most once)."""
    return sum(len(fanout.fan_out(self.services, notification_id)) for notification_id in notification_ids)


@queue_task("notify", ignore_result=True)
def deliver(self: Any, delivery_id: str) -> str | None:
    """Attempt one webhook delivery; a failure soon due is sent again with a countdown."""
    attempted = delivery.attempt(self.services, delivery_id)
    if attempted is None:
        return None
    if (
        attempted.status == "pending"
        and attempted.retry_in is not None
        and attempted.retry_in <= COUNTDOWN_MAX_S
    ):
        fanout.send_deliveries(self.services, [delivery_id], countdown=attempted.retry_in)
    return attempted.status


@queue_task("notify", ignore_result=True, autoretry_for=(OSError,), max_retries=5, retry_backoff=True)
def send_email(self: Any, notification_id: str) -> bool:
    """Email one notification to its user (SMTP failures are retried with backoff)."""
    return fanout.email(self.services, notification_id)


@queue_task("notify", ignore_result=True)
def sweep_outbox(self: Any) -> dict[str, int]:
    """Send again lost fan-outs and due attempts (beat)."""
    return dataclasses.asdict(sweep.sweep(self.services))
