"""Every table module, imported so Alembic autogenerate sees the whole schema."""

import assistant.tables
import ledger.tables
import orchestration.api_keys
import orchestration.idempotency
import orchestration.payment_tables
import orchestration.tables
import orchestration.users
import orchestration.welcome
from runtime.db import Base

TABLE_MODULES = (
    assistant.tables, ledger.tables, orchestration.api_keys, orchestration.idempotency,
    orchestration.payment_tables, orchestration.tables, orchestration.users, orchestration.welcome,
)
target_metadata = Base.metadata
