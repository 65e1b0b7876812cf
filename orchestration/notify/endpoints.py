"""Webhook endpoints of a user: register (the secret shown once), list, delete, rotate the secret, send a
test. Each change runs under the user's account lock and refreshes the events their watch row subscribes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from orchestration.notify import keys, outbox
from orchestration.notify.errors import WebhookRefused
from orchestration.notify.tables import deliveries, endpoints
from orchestration.notify.watch import EVENT_TYPES, events_mask
from orchestration.services import Services
from runtime.outbound import OutboundPolicy, OutboundRefused, check_url


def _now() -> datetime:
    return datetime.now(UTC)


def policy(services: Services) -> OutboundPolicy:
    """The outbound guard's limits for webhook deliveries: no redirect is followed (3xx is a failure)."""
    settings = services.settings
    return OutboundPolicy(
        max_bytes=settings.WEBHOOK_MAX_RESPONSE_BYTES,
        timeout_s=settings.WEBHOOK_TIMEOUT_S,
        max_redirects=0,
        allow_loopback=settings.OUTBOUND_ALLOW_LOOPBACK,
    )


def refresh_events(db: Connection, user_id: str) -> None:
    """Store which events the user's enabled endpoints subscribe to, for the money units' lock to read."""
    rows = db.execute(
        select(endpoints.c.events).where(endpoints.c.user_id == user_id, endpoints.c.status == "enabled")
    ).all()
    outbox.upsert_watch(db, user_id, events=events_mask({name for row in rows for name in row.events}))


def create(services: Services, *, user_id: str, url: str, events: Sequence[str]) -> tuple[Row[Any], str]:
    """Register an endpoint; answers its row and the whsec_ secret (shown this once, stored encrypted)."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise WebhookRefused(
            f"Unknown events: {', '.join(unknown)}." if unknown else "No events.", kind="invalid-events"
        )
    try:
        check_url(url, policy(services))
    except OutboundRefused as exc:
        raise WebhookRefused(
            f"The webhook URL is refused: {exc.message}", kind="invalid-webhook-url"
        ) from None
    secret = keys.new_secret()
    sealed = keys.seal(services.settings.WEBHOOK_SECRET_KEY, secret)
    with services.uow(account_of=user_id) as db:
        count = db.execute(select(func.count()).where(endpoints.c.user_id == user_id)).scalar_one()
        if count >= services.settings.WEBHOOK_MAX_PER_USER:
            raise WebhookRefused(
                f"At most {services.settings.WEBHOOK_MAX_PER_USER} webhook endpoints per user.",
                kind="too-many-webhooks",
                status=409,
            )
        row = db.execute(
            insert(endpoints)
            .values(
                id=outbox.new_id("whe"),
                user_id=user_id,
                url=url,
                events=sorted(set(events)),
                secret=sealed,
                status="enabled",
                created_at=_now(),
            )
            .returning(*endpoints.c)
        ).one()
        refresh_events(db, user_id)
    return row, secret


def list_endpoints(services: Services, *, user_id: str) -> list[Row[Any]]:
    """The user's endpoints, oldest first (a user has a handful)."""
    with services.uow(autocommit=True) as db:
        query = select(endpoints).where(endpoints.c.user_id == user_id).order_by(endpoints.c.created_at)
        return list(db.execute(query).all())


def own(db: Connection, *, user_id: str, endpoint_id: str) -> Row[Any]:
    """The user's endpoint; 404 for anyone else's."""
    row = db.execute(
        select(endpoints).where(endpoints.c.id == endpoint_id[:40], endpoints.c.user_id == user_id)
    ).first()
    if row is None:
        raise WebhookRefused("Not found.", kind="not-found", status=404)
    return row


def delete(services: Services, *, user_id: str, endpoint_id: str) -> None:
    """Remove an endpoint; its pending deliveries are canceled."""
    with services.uow(account_of=user_id) as db:
        own(db, user_id=user_id, endpoint_id=endpoint_id)
        db.execute(
            update(deliveries)
            .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending")
            .values(status="canceled", next_attempt_at=None, error="endpoint deleted")
        )
        db.execute(endpoints.delete().where(endpoints.c.id == endpoint_id))
        refresh_events(db, user_id)


def rotate(services: Services, *, user_id: str, endpoint_id: str) -> tuple[Row[Any], str]:
    """A new secret (shown once); the old one keeps signing beside it for WEBHOOK_ROTATION_GRACE_S."""
    secret = keys.new_secret()
    settings = services.settings
    with services.uow(account_of=user_id) as db:
        row = own(db, user_id=user_id, endpoint_id=endpoint_id)
        rotated = db.execute(
            update(endpoints)
            .where(endpoints.c.id == row.id)
            .values(
                secret=keys.seal(settings.WEBHOOK_SECRET_KEY, secret),
                previous_secret=row.secret,
                previous_until=_now() + timedelta(seconds=settings.WEBHOOK_ROTATION_GRACE_S),
            )
            .returning(*endpoints.c)
        ).one()
    return rotated, secret


def send_test(services: Services, *, user_id: str, endpoint_id: str) -> str:
    """Queue a `webhook.test` delivery to one endpoint (even a disabled one: a test is how it is checked)."""
    with services.uow(account_of=user_id) as db:
        row = own(db, user_id=user_id, endpoint_id=endpoint_id)
        return outbox.write(
            db, user_id=user_id, event_type="webhook.test", data={"endpoint_id": row.id}, endpoint_id=row.id
        )


def enable(services: Services, *, user_id: str, endpoint_id: str) -> Row[Any]:
    """Turn a disabled endpoint back on (after its receiver was fixed)."""
    with services.uow(account_of=user_id) as db:
        own(db, user_id=user_id, endpoint_id=endpoint_id)
        row = db.execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id)
            .values(status="enabled", disabled_reason=None, failing_since=None)
            .returning(*endpoints.c)
        ).one()
        refresh_events(db, user_id)
    return row
