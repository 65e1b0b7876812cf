"""After a notification's commit: claim its fan-out once, make a delivery per endpoint that subscribes to
it, tell /me/events, and send its email. Runs on the notify queue, never in the path that wrote it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from orchestration.accounts.users import users
from orchestration.jobs import progress
from orchestration.notify import mail, outbox
from orchestration.notify.tables import deliveries, endpoints, notifications
from orchestration.services import Services

log = logging.getLogger(__name__)
DELIVER_TASK = "creditflow.notify.deliver"
EMAIL_TASK = "creditflow.notify.send_email"


def _now() -> datetime:
    return datetime.now(UTC)


def fan_out(services: Services, notification_id: str) -> list[str]:
    """Make the notification's deliveries (exactly once: a compare-and-set on it) and send them."""
    now = _now()
    with services.uow() as db:
        row = db.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.fanned_out_at.is_(None))
            .values(fanned_out_at=now)
            .returning(*notifications.c)
        ).first()
        if row is None:
            return []  # fanned out already (a duplicate message, or the sweep's second send)
        targets = _targets(db, row)
        made = [outbox.new_id("whd") for _ in targets]
        for delivery_id, endpoint_id in zip(made, targets, strict=True):
            db.execute(
                insert(deliveries).values(
                    id=delivery_id,
                    notification_id=row.id,
                    endpoint_id=endpoint_id,
                    user_id=row.user_id,
                    event_type=row.type,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    send_deliveries(services, made)
    stream_type = outbox.STREAM_TYPES.get(row.type)
    if stream_type is not None:
        # `kind` names the event itself on the user's stream: a job's kind is told as `job_kind`.
        fields = {("job_kind" if name == "kind" else name): value for name, value in dict(row.data).items()}
        progress.publish_user_event(
            services.redis, row.user_id, stream_type, id=row.id, event=row.type, **fields
        )
    if mail.enabled(services.settings) and row.type in services.settings.email_events:
        _send(services, EMAIL_TASK, row.id)
    return made


def _targets(db: Any, row: Any) -> list[str]:
    if row.endpoint_id is not None:  # a test send: that endpoint only
        return [row.endpoint_id]
    found = db.execute(
        select(endpoints.c.id, endpoints.c.events).where(
            endpoints.c.user_id == row.user_id, endpoints.c.status == "enabled"
        )
    ).all()
    return [endpoint.id for endpoint in found if row.type in endpoint.events]


def send_deliveries(services: Services, delivery_ids: list[str], *, countdown: float = 0) -> None:
    """Enqueue attempts; one the broker refuses is found by the sweep (the row is due)."""
    for delivery_id in delivery_ids:
        _send(services, DELIVER_TASK, delivery_id, countdown=countdown)


def _send(services: Services, task: str, argument: str, *, countdown: float = 0) -> None:
    try:
        services.producer.send_task(task, args=[argument], countdown=countdown or None, ignore_result=True)
    except Exception as exc:
        log.warning("%s(%s) not sent (%s); the sweep will", task, argument, exc)


def email(services: Services, notification_id: str) -> bool:
    """Email a notification to its user, once (emailed_at is claimed first; a failed send gives it back)."""
    settings = services.settings
    with services.uow() as db:
        row = db.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.emailed_at.is_(None))
            .values(emailed_at=_now())
            .returning(notifications.c.user_id, notifications.c.type, notifications.c.data)
        ).first()
        address = row and db.execute(select(users.c.email).where(users.c.id == row.user_id)).scalar()
    if row is None or not address or not mail.enabled(settings):
        return False
    try:
        mail.send(settings, mail.message(settings, to=address, event_type=row.type, data=row.data))
    except Exception:
        with services.uow() as db:  # not sent: the retry may claim it again
            db.execute(
                update(notifications).where(notifications.c.id == notification_id).values(emailed_at=None)
            )
        raise
    return True
