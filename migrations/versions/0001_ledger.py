"""Ledger: accounts, holds, lots, immutable hash-chained entries, checkpoints, idempotency.

Revision ID: 0001_ledger
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001_ledger"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fixed ids of the system accounts (ledger/chart.py); their balances are derived from entries.
SYSTEM_ACCOUNTS = {
    "promotions": 1, "revenue": 2, "stripe": 3, "paypal": 4, "crypto": 5, "expiry": 6, "debt": 7,
    "adjustments": 8,
}
IMMUTABLE = ("ledger_entries", "ledger_checkpoints", "ledger_checkpoint_leaves")

# CHECK names are short: the shared naming convention (runtime/db.py) prefixes ck_<table>_.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def _zero() -> sa.TextClause:
    return sa.text("0")


def _tables() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("code", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("user_id", sa.String(100)),
        sa.Column("posted", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("held", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("debt", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("promo", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("head", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.UniqueConstraint("code", name="uq_ledger_accounts_code"),
        sa.UniqueConstraint("user_id", name="uq_ledger_accounts_user_id"),
        sa.CheckConstraint("kind IN ('user', 'system')", name="kind"),
        sa.CheckConstraint("held >= 0", name="held_non_negative"),
        sa.CheckConstraint("posted >= held", name="available_non_negative"),
        sa.CheckConstraint("debt >= 0", name="debt_non_negative"),
        sa.CheckConstraint("promo >= 0 AND promo <= posted", name="promo_within_posted"),
        sa.CheckConstraint("seq >= 0", name="seq_non_negative"),
    )
    op.create_table(
        "ledger_holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", Id, sa.ForeignKey("ledger_accounts.id", name="fk_ledger_holds_account_id_ledger_accounts"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("captured", sa.BigInteger, nullable=False, server_default=_zero()),
        sa.Column("expires_at", Ts, nullable=False),
        sa.Column("reference", sa.String(200)),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("resolve_key", sa.String(200)),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("resolved_at", Ts),
        sa.UniqueConstraint("idempotency_key", name="uq_ledger_holds_idempotency_key"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
        sa.CheckConstraint("status IN ('pending', 'captured', 'voided', 'expired')", name="status"),
    )
    op.create_index("ix_ledger_holds_account_id", "ledger_holds", ["account_id"])
    op.create_index(
        "ix_ledger_holds_pending_expiry", "ledger_holds", ["expires_at"],
        postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "ledger_lots",
        sa.Column("id", Id, primary_key=True),
        sa.Column("account_id", Id, sa.ForeignKey("ledger_accounts.id", name="fk_ledger_lots_account_id_ledger_accounts"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default=_zero()),
        sa.Column("expires_at", Ts),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
    )
    op.create_index("ix_ledger_lots_account_id", "ledger_lots", ["account_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", Id, primary_key=True),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("debit_account_id", Id, nullable=False),
        sa.Column("credit_account_id", Id, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("hold_id", sa.String(32)),
        sa.Column("lot_id", Id),
        sa.Column("reference", sa.String(200)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("posted_after", sa.BigInteger, nullable=False),
        sa.Column("held_after", sa.BigInteger, nullable=False),
        sa.Column("debt_after", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.UniqueConstraint("account_id", "seq", name="uq_ledger_entries_account_seq"),
        sa.CheckConstraint("amount >= 0", name="amount_non_negative"),
        sa.CheckConstraint("seq >= 1", name="seq_positive"),
    )
    op.create_table(
        "ledger_unsealed",
        sa.Column("entry_id", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", Id, primary_key=True),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.UniqueConstraint("number", name="uq_ledger_checkpoints_number"),
        sa.CheckConstraint("size > 0", name="size_positive"),
    )
    op.create_table(
        "ledger_checkpoint_leaves",
        sa.Column("entry_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("checkpoint_id", Id, sa.ForeignKey("ledger_checkpoints.id", name="fk_ledger_checkpoint_leaves_checkpoint_id_ledger_checkpoints"), nullable=False),
        sa.Column("leaf_index", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("checkpoint_id", "leaf_index", name="uq_ledger_checkpoint_leaves_position"),
    )
    op.create_table(
        "ledger_operations",
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("created_at", Ts, nullable=False),
    )


def _postgresql_functions_and_triggers() -> None:
    # The per-account chain link, computed inside the account row update (see ledger/canonical.py).
    op.execute("""
        CREATE FUNCTION ledger_link(prev bytea, account_id bigint, seq bigint, posted bigint, held bigint,
                                    debt bigint, body bytea) RETURNS bytea
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
        $$ SELECT sha256(prev || int8send(account_id) || int8send(seq) || int8send(posted)
                         || int8send(held) || int8send(debt) || body) $$
    """)
    op.execute("""
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on % refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
    """)
    for table in IMMUTABLE:
        op.execute(f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
        """)
        op.execute(f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """)
    op.execute("""
        CREATE FUNCTION ledger_queue_for_sealing() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO ledger_unsealed (entry_id) VALUES (NEW.id);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER ledger_entries_queue_for_sealing AFTER INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_queue_for_sealing()
    """)
    # User account ids start after the seeded system accounts.
    op.execute("SELECT setval(pg_get_serial_sequence('ledger_accounts', 'id'), 999)")


def _sqlite_triggers() -> None:
    for table in IMMUTABLE:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
                BEGIN SELECT RAISE(ABORT, '{action} on {table} refused: the ledger is append-only'); END
            """)
    op.execute("""
        CREATE TRIGGER ledger_entries_queue_for_sealing AFTER INSERT ON ledger_entries
        BEGIN INSERT INTO ledger_unsealed (entry_id) VALUES (NEW.id); END
    """)


def upgrade() -> None:
    """Create the ledger schema, its integrity triggers and the system accounts."""
    _tables()
    accounts = sa.table(
        "ledger_accounts", sa.column("id"), sa.column("code"), sa.column("kind"), sa.column("head"),
        sa.column("created_at"),
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)
    op.bulk_insert(
        accounts,
        [
            {"id": account_id, "code": f"system:{name}", "kind": "system", "head": bytes(32), "created_at": now}
            for name, account_id in SYSTEM_ACCOUNTS.items()
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_functions_and_triggers()
    else:
        _sqlite_triggers()


def downgrade() -> None:
    """Drop the ledger schema (development only: it destroys the books)."""
    bind = op.get_bind()
    for table in ("ledger_operations", "ledger_checkpoint_leaves", "ledger_checkpoints", "ledger_unsealed",
                  "ledger_entries", "ledger_lots", "ledger_holds", "ledger_accounts"):
        op.drop_table(table)
    if bind.dialect.name == "postgresql":
        for function in ("ledger_queue_for_sealing()", "ledger_refuse_change()",
                         "ledger_link(bytea, bigint, bigint, bigint, bigint, bigint, bytea)"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}")
