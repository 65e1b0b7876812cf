"""The delivery log of a user's webhooks, and the replay of one delivery (same webhook-id, a new row)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, insert, select

from orchestration.notify import outbox
from orchestration.notify.errors import WebhookRefused
from orchestration.notify.fanout import send_deliveries
from orchestration.notify.tables import deliveries, endpoints
from orchestration.services import Services


def list_deliveries(
    services: Services,
    *,
    user_id: str,
    limit: int,
    before: tuple[datetime, str] | None = None,
    endpoint_id: str | None = None,
    status: str | None = None,
) -> list[Row[Any]]:
    """The user's deliveries, newest first, after an optional (created_at, id) cursor."""
    query = select(deliveries).where(deliveries.c.user_id == user_id)
    if endpoint_id:
        query = query.where(deliveries.c.endpoint_id == endpoint_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if before is not None:
        created, delivery_id = before
        query = query.where(
            (deliveries.c.created_at < created)
            | ((deliveries.c.created_at == created) & (deliveries.c.id < delivery_id))
        )
    query = query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(limit)
    with services.uow(autocommit=True) as db:
        return list(db.execute(query).all())


def replay(services: Services, *, user_id: str, delivery_id: str) -> Row[Any]:
    """Send a delivery's notification to its endpoint again, as a new delivery with the same webhook-id."""
    now = datetime.now(UTC)
    with services.uow(account_of=user_id) as db:
        original = db.execute(
            select(deliveries).where(deliveries.c.id == delivery_id[:40], deliveries.c.user_id == user_id)
        ).first()
        if original is None:
            raise WebhookRefused("Not found.", kind="not-found", status=404)
        status = db.execute(select(endpoints.c.status).where(endpoints.c.id == original.endpoint_id)).scalar()
        if status != "enabled":
            raise WebhookRefused(
                "The endpoint is disabled or deleted: enable it first.", kind="webhook-disabled", status=409
            )
        row = db.execute(
            insert(deliveries)
            .values(
                id=outbox.new_id("whd"),
                notification_id=original.notification_id,
                endpoint_id=original.endpoint_id,
                user_id=user_id,
                event_type=original.event_type,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                replay_of=original.id,
                created_at=now,
            )
            .returning(*deliveries.c)
        ).one()
    send_deliveries(services, [row.id])
    return row
