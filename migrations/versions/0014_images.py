"""Images: each image job's upstream generation (its provider id, stored before the first poll), and the
images kept for their owners.

Revision ID: 0014_images
Revises: 0013_notify
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_images"
down_revision = "0013_notify"
branch_labels = None
depends_on = None
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "image_generations",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("handle", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("steps_done", sa.Integer, nullable=False),
        sa.Column("image_id", sa.String(32)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False, unique=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("content_type", sa.String(40), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("storage_key", sa.String(300), nullable=False),
        sa.Column("thumb_key", sa.String(300), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp),
    )
    op.create_index("ix_images_user_created", "images", ["user_id", "created_at"])
    op.create_index("ix_images_expires", "images", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_images_expires", "images")
    op.drop_index("ix_images_user_created", "images")
    op.drop_table("images")
    op.drop_table("image_generations")
