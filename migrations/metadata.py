"""Every table module, imported so Alembic autogenerate sees the whole schema."""

import assistant.tables  # noqa: F401
import ledger.tables  # noqa: F401
import orchestration.api_keys  # noqa: F401
import orchestration.idempotency  # noqa: F401
import orchestration.users  # noqa: F401
from runtime.db import Base

target_metadata = Base.metadata
