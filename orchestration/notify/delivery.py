"""One attempt of a webhook delivery: claimed with a lease (a killed worker's attempt is retried when the
lease ends), signed per Standard Webhooks, sent through the outbound guard, and judged: 2xx succeeds, a
redirect or any other answer fails and is retried on the schedule, 410 disables the endpoint, 429 and 503
wait what Retry-After says; an endpoint failing every delivery for WEBHOOK_DISABLE_AFTER_S is disabled."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from orchestration.notify import keys, meters, outbox, schedule
from orchestration.notify.endpoints import policy, refresh_events
from orchestration.notify.tables import deliveries, endpoints, notifications
from orchestration.services import Services
from runtime.outbound import OutboundRefused, guarded_request

log = logging.getLogger(__name__)
# An attempt's lease: its whole exchange (the guard's deadline) and its bookkeeping, with room to spare.
LEASE_MARGIN_S = 10
USER_AGENT = "creditflow-webhooks/1"


@dataclass(frozen=True)
class Attempted:
    """What one attempt did: the delivery's status after it and, if pending, seconds to the next."""

    status: str
    retry_in: float | None = None
    response_status: int | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


_JOINED = (
    select(
        deliveries,
        endpoints.c.url,
        endpoints.c.secret,
        endpoints.c.previous_secret,
        endpoints.c.previous_until,
        endpoints.c.status.label("endpoint_status"),
        notifications.c.data,
        notifications.c.created_at.label("notified_at"),
    )
    .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
    .join(notifications, notifications.c.id == deliveries.c.notification_id)
)


def attempt(services: Services, delivery_id: str) -> Attempted | None:
    """Try a due delivery once; None when it is not due or another worker holds it."""
    attempted = _attempt(services, delivery_id)
    if attempted is not None:
        meters.delivery(attempted.status)  # every caller (the task, the sweep) counted once per attempt
    return attempted


def _attempt(services: Services, delivery_id: str) -> Attempted | None:
    settings = services.settings
    now = _now()
    with services.uow(autocommit=True) as db:
        row = db.execute(_JOINED.where(deliveries.c.id == delivery_id)).first()
    due = row is not None and row.status == "pending" and (_aware(row.next_attempt_at) or now) <= now
    if row is None or not due:
        return None
    if row.endpoint_status != "enabled" and row.event_type != "webhook.test":
        _finish(services, row, status="canceled", error="endpoint disabled", attempts=row.attempts)
        return Attempted("canceled")
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S + LEASE_MARGIN_S)
    with services.uow(autocommit=True) as db:
        claimed = db.execute(
            update(deliveries)
            .where(
                deliveries.c.id == row.id,
                deliveries.c.status == "pending",
                deliveries.c.attempts == row.attempts,
            )
            .values(attempts=row.attempts + 1, last_attempt_at=now, next_attempt_at=lease)
        ).rowcount
    if claimed != 1:
        return None
    status, retry_after, error = _post(services, row, now)
    attempts = row.attempts + 1
    if status is not None and 200 <= status < 300:
        _finish(services, row, status="succeeded", attempts=attempts, response_status=status)
        return Attempted("succeeded", response_status=status)
    if status == 410:
        _finish(services, row, status="failed", attempts=attempts, response_status=status, error="410 Gone")
        disable(services, row.user_id, row.endpoint_id, reason="the receiver answered 410 Gone")
        return Attempted("failed", response_status=status)
    retry_in = schedule.after_failure(
        settings.webhook_schedule,
        attempts,
        status=status,
        retry_after=retry_after,
        jitter=settings.WEBHOOK_RETRY_JITTER,
        max_retry_after_s=settings.WEBHOOK_MAX_RETRY_AFTER_S,
    )
    outcome = "pending" if retry_in is not None else "failed"
    _finish(
        services,
        row,
        status=outcome,
        attempts=attempts,
        response_status=status,
        error=error,
        next_at=now + timedelta(seconds=retry_in) if retry_in is not None else None,
    )
    _note_failure(services, row, now)
    return Attempted(outcome, retry_in, status)


def _post(services: Services, row: Any, now: datetime) -> tuple[int | None, str | None, str | None]:
    """(status, Retry-After, error) of one POST; status None when nothing came back."""
    key = services.settings.WEBHOOK_SECRET_KEY
    in_use = [keys.unseal(key, row.secret)]
    if row.previous_secret and (_aware(row.previous_until) or now) > now:
        in_use.append(keys.unseal(key, row.previous_secret))
    body = outbox.body(row.event_type, row.data, _aware(row.notified_at) or now)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": row.notification_id,  # the same on every attempt and replay: receivers deduplicate
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": keys.signature(in_use, msg_id=row.notification_id, timestamp=now, body=body),
    }
    try:
        response = guarded_request(
            "POST", row.url, policy=policy(services), headers=headers, content=body.encode()
        )
    except OutboundRefused as exc:
        return None, None, f"{exc.reason}: {exc.message}"[:300]
    error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
    if 300 <= response.status < 400:
        error = f"HTTP {response.status}: redirects are not followed"
    return response.status, response.headers.get("retry-after"), error


def _finish(
    services: Services,
    row: Any,
    *,
    status: str,
    attempts: int,
    response_status: int | None = None,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    with services.uow(autocommit=True) as db:
        db.execute(
            update(deliveries)
            .where(
                deliveries.c.id == row.id, deliveries.c.status == "pending", deliveries.c.attempts == attempts
            )
            .values(status=status, next_attempt_at=next_at, response_status=response_status, error=error)
        )
    if status == "succeeded":
        with services.uow(autocommit=True) as db:
            db.execute(update(endpoints).where(endpoints.c.id == row.endpoint_id).values(failing_since=None))


def _note_failure(services: Services, row: Any, now: datetime) -> None:
    """Remember when the endpoint started failing; disable it once it has failed for too long."""
    with services.uow(autocommit=True) as db:
        db.execute(
            update(endpoints)
            .where(endpoints.c.id == row.endpoint_id, endpoints.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        since = db.execute(
            select(endpoints.c.failing_since).where(endpoints.c.id == row.endpoint_id)
        ).scalar()
    limit = timedelta(seconds=services.settings.WEBHOOK_DISABLE_AFTER_S)
    if since is not None and now - (_aware(since) or now) >= limit:
        disable(services, row.user_id, row.endpoint_id, reason="every delivery failed for too long")


def disable(services: Services, user_id: str, endpoint_id: str, *, reason: str) -> bool:
    """Disable an endpoint, cancel its pending deliveries and tell its owner (once)."""
    with services.uow(account_of=user_id) as db:
        changed = db.execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id, endpoints.c.status == "enabled")
            .values(status="disabled", disabled_reason=reason[:200])
            .returning(endpoints.c.url)
        ).first()
        if changed is None:
            return False
        _cancel_pending(db, endpoint_id)
        refresh_events(db, user_id)
        outbox.write(
            db,
            user_id=user_id,
            event_type="webhook.disabled",
            data={"endpoint_id": endpoint_id, "url": changed.url, "reason": reason},
        )
    log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
    return True


def _cancel_pending(db: Connection, endpoint_id: str) -> None:
    db.execute(
        update(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == "pending",
            deliveries.c.event_type != "webhook.test",
        )
        .values(status="canceled", next_attempt_at=None, error="endpoint disabled")
    )
