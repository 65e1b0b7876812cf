"""Tables of the images room: each job's upstream generation, and the images kept for their owners."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, String, Table

from runtime.db import Base

Timestamp = DateTime(timezone=True)

# Written the moment the provider accepted the generation, before the first poll: a worker that dies
# mid-generation is followed by one that polls the same upstream id (one generation, one charge).
image_generations = Table(
    "image_generations",
    Base.metadata,
    Column("job_id", String(32), primary_key=True),
    Column("provider", String(20), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("handle", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("steps_done", Integer, nullable=False),
    # Set once the result was stored: a later attempt serves it instead of asking the provider again.
    Column("image_id", String(32)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

images = Table(
    "images",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(100), nullable=False),
    Column("job_id", String(32), nullable=False, unique=True),
    Column("model", String(100), nullable=False),
    Column("content_type", String(40), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("thumb_key", String(300), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # NULL: kept for ever (IMAGE_RETENTION_DAYS=0 when it was made).
    Column("expires_at", Timestamp),
    Index("ix_images_user_created", "user_id", "created_at"),
    Index("ix_images_expires", "expires_at"),
)
