"""Every table module, imported so Alembic autogenerate sees the whole schema."""

from runtime.db import Base

target_metadata = Base.metadata
