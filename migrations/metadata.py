"""Every table module, imported so Alembic autogenerate sees the whole schema."""

import assistant.tables
import ledger.tables
import orchestration.accounts.api_keys
import orchestration.accounts.idempotency
import orchestration.accounts.users
import orchestration.accounts.welcome
import orchestration.images.tables
import orchestration.notify.tables
import orchestration.payments.tables
import orchestration.reports.tables
import orchestration.tables
from runtime.db import Base

TABLE_MODULES = (
    assistant.tables, ledger.tables, orchestration.accounts.api_keys, orchestration.accounts.idempotency,
    orchestration.payments.tables, orchestration.reports.tables, orchestration.tables, orchestration.accounts.users, orchestration.accounts.welcome,
    orchestration.notify.tables, orchestration.images.tables,
)
target_metadata = Base.metadata
