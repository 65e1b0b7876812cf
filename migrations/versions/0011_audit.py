"""The admin audit log: append-only, hash-chained rows of every admin action.

Revision ID: 0011_audit
Revises: 0010_payments_reconcile_caps
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_audit"
down_revision = "0010_payments_reconcile_caps"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", Id, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.UniqueConstraint("seq", name="uq_admin_audit_seq"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The ledger's own refusal (0001_ledger): the audit log is as append-only as the entries.
        op.execute("""
            CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
            FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
        """)
        op.execute("""
            CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """)
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER admin_audit_no_{action.lower()} BEFORE {action} ON admin_audit
                BEGIN SELECT RAISE(ABORT, '{action} on admin_audit refused: the audit log is append-only'); END
            """)


def downgrade() -> None:
    op.drop_table("admin_audit")
