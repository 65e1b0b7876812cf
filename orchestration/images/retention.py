"""Retention: images past their `expires_at` (IMAGE_RETENTION_DAYS when made) leave the store and the
database; the maintenance beat runs it hourly. The bytes go first, then the row, so a crash between the
two leaves a row whose bytes are gone (answered 404, deleted on the next pass), never stray bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from orchestration.images.storage import image_store
from orchestration.images.tables import images
from orchestration.services import Services

BATCH = 500


def purge_expired(services: Services, *, now: datetime | None = None, limit: int = BATCH) -> int:
    """Delete up to `limit` expired images (bytes, thumbnail, row); how many went."""
    now = now or datetime.now(UTC)
    with services.uow(autocommit=True) as db:
        due = db.execute(
            select(images.c.id, images.c.storage_key, images.c.thumb_key)
            .where(images.c.expires_at.is_not(None), images.c.expires_at <= now)
            .order_by(images.c.expires_at)
            .limit(limit)
        ).all()
    store = image_store(services.settings)
    for row in due:
        store.delete(row.storage_key)
        store.delete(row.thumb_key)
    if due:
        with services.uow() as db:
            db.execute(delete(images).where(images.c.id.in_([row.id for row in due])))
    return len(due)
