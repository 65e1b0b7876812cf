"""The rows of image jobs: the upstream generation (stored before the first poll) and the images kept.

`keep_image` decodes what the provider sent (Pillow: a real image, of a known format, not a
decompression bomb), stores it and its thumbnail, and records it for its owner, once per job."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image
from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError

from assistant.providers.images import Handle
from orchestration.images.storage import image_store
from orchestration.images.tables import image_generations, images
from orchestration.services import Services

THUMB_SIDE = 256
CONTENT_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg"}


class UnusableImage(ValueError):
    """What the provider sent is not an image we can keep."""


def _now() -> datetime:
    return datetime.now(UTC)


def generation_of(services: Services, job_id: str) -> Row[Any] | None:
    """The job's upstream generation, None before it was submitted."""
    with services.uow(autocommit=True) as db:
        return db.execute(select(image_generations).where(image_generations.c.job_id == job_id)).first()


def save_handle(services: Services, job_id: str, handle: Handle) -> None:
    """Record the provider's id of the job's generation (committed before anything polls it)."""
    now = _now()
    with services.uow() as db:
        db.execute(
            image_generations.insert().values(
                job_id=job_id,
                provider=handle.provider,
                request_id=handle.request_id,
                handle=handle.as_json(),
                state="submitted",
                steps_done=0,
                created_at=now,
                updated_at=now,
            )
        )


def handle_of(row: Row[Any]) -> Handle:
    """The stored handle as the provider gave it."""
    data = row.handle
    return Handle(data["provider"], data["request_id"], data.get("urls") or {}, data.get("request") or {})


def mark(
    services: Services, job_id: str, *, state: str, steps_done: int | None = None, image_id: str | None = None
) -> None:
    """Record where the generation got to (its last state, steps seen, the stored image)."""
    values: dict[str, Any] = {"state": state, "updated_at": _now()}
    if steps_done is not None:
        values["steps_done"] = steps_done
    if image_id is not None:
        values["image_id"] = image_id
    with services.uow(autocommit=True) as db:
        db.execute(update(image_generations).where(image_generations.c.job_id == job_id).values(values))


def _decoded(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnusableImage(f"the provider's result is not a readable image ({type(exc).__name__})") from exc
    if image.format not in CONTENT_TYPES:
        raise UnusableImage(f"the provider's result is a {image.format} image, not PNG, WebP or JPEG")
    return image


def thumbnail(image: Image.Image, side: int = THUMB_SIDE, quality: int = 70) -> bytes:
    """A WebP of the image at most `side` pixels on its longer edge."""
    small = image.convert("RGB")
    small.thumbnail((side, side))
    out = io.BytesIO()
    small.save(out, format="WEBP", quality=quality)
    return out.getvalue()


def keep_image(services: Services, *, job_id: str, user_id: str, model: str, data: bytes) -> Row[Any]:
    """Store the job's image and its thumbnail and record them; the same row for a job seen again."""
    with services.uow(autocommit=True) as db:
        kept = db.execute(select(images).where(images.c.job_id == job_id)).first()
    if kept is not None:
        return kept
    image = _decoded(data)
    content_type = CONTENT_TYPES[str(image.format)]
    image_id = uuid.uuid4().hex
    key = f"{user_id}/{image_id}.{EXTENSIONS[content_type]}"
    thumb_key = f"{user_id}/{image_id}.thumb.webp"
    store = image_store(services.settings)
    store.put(key, data, content_type)
    store.put(thumb_key, thumbnail(image), "image/webp")
    days = services.settings.IMAGE_RETENTION_DAYS
    now = _now()
    try:
        with services.uow() as db:
            return db.execute(
                images.insert()
                .values(
                    id=image_id,
                    user_id=user_id,
                    job_id=job_id,
                    model=model,
                    content_type=content_type,
                    width=image.width,
                    height=image.height,
                    size_bytes=len(data),
                    storage_key=key,
                    thumb_key=thumb_key,
                    created_at=now,
                    expires_at=now + timedelta(days=days) if days else None,
                )
                .returning(*images.c)
            ).one()
    except IntegrityError:  # another delivery of the same job kept it first: theirs is the image
        store.delete(key)
        store.delete(thumb_key)
        with services.uow(autocommit=True) as db:
            return db.execute(select(images).where(images.c.job_id == job_id)).one()


def image_of(services: Services, *, user_id: str, image_id: str) -> Row[Any] | None:
    """The user's image row (None for anyone else's, or an expired one)."""
    with services.uow(autocommit=True) as db:
        row = db.execute(select(images).where(images.c.id == image_id, images.c.user_id == user_id)).first()
    if row is None or (row.expires_at is not None and _aware(row.expires_at) <= _now()):
        return None
    return row


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
