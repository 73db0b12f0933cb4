"""Ledger time: every entry counts from its `effective_at` for reporting, beside `created_at`
(when Tally recorded it); a submission may ask for an `effective_at` in the past; a tenant
may close periods (`closed_through`, `period_closes`); and `balance_snapshots` bound every
as-of computation: the balance of each account at each close, and checkpoints the workers
write as entries accumulate.

Existing entries take their `created_at` as `effective_at`: the immutability trigger is
set aside for that one UPDATE, inside this migration's transaction.

Revision ID: 0011_ledger_time
Revises: 0010_money_moves
Create Date: 2026-12-07 20:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0011_ledger_time"
down_revision: str | None = "0010_money_moves"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"


def _tenant_table(table: str, privileges: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY service_all ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} TO {API_ROLE}"
        " USING (tenant_id = tally_current_tenant())"
        " WITH CHECK (tenant_id = tally_current_tenant())"
    )
    op.execute(f"GRANT {privileges} ON {table} TO {API_ROLE}")


def upgrade() -> None:
    op.add_column("entries", sa.Column("effective_at", sa.DateTime(timezone=True)))
    op.execute("ALTER TABLE entries DISABLE TRIGGER entries_no_update_or_delete")
    op.execute("UPDATE entries SET effective_at = created_at")
    op.execute("ALTER TABLE entries ENABLE TRIGGER entries_no_update_or_delete")
    op.alter_column("entries", "effective_at", nullable=False)
    op.create_index(
        "ix_entries_account_id_effective_at", "entries", ["account_id", "effective_at", "id"]
    )
    op.create_index("ix_entries_tenant_id_effective_at", "entries", ["tenant_id", "effective_at"])
    op.add_column("transactions", sa.Column("effective_at", sa.DateTime(timezone=True)))
    op.add_column("tenants", sa.Column("closed_through", sa.DateTime(timezone=True)))
    op.create_table(
        "period_closes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("through", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), server_default=text("now()"), nullable=False
        ),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("summary", JSONB(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_period_closes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_closes")),
        sa.UniqueConstraint(
            "tenant_id", "through", name=op.f("uq_period_closes_tenant_id_through")
        ),
    )
    op.create_table(
        "balance_snapshots",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("effective_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("balance", sa.Numeric(1000, 0), nullable=False),
        sa.Column("entry_count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('close', 'checkpoint')", name=op.f("ck_balance_snapshots_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balance_snapshots_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "kind", "effective_through", name=op.f("pk_balance_snapshots")
        ),
    )
    op.create_index(
        "ix_balance_snapshots_account_id_effective_through",
        "balance_snapshots",
        ["account_id", "effective_through"],
    )
    _tenant_table("period_closes", "SELECT")
    _tenant_table("balance_snapshots", "SELECT")


def downgrade() -> None:
    op.drop_table("balance_snapshots")
    op.drop_table("period_closes")
    op.drop_column("tenants", "closed_through")
    op.drop_column("transactions", "effective_at")
    op.drop_index("ix_entries_tenant_id_effective_at", "entries")
    op.drop_index("ix_entries_account_id_effective_at", "entries")
    op.drop_column("entries", "effective_at")
