"""Tamper evidence: each journal entry's hash chains it to the previous entry of its
account, each account keeps its chain head, and seals record a tenant's Merkle root.

`entries.hash` is nullable: entries written before this migration (and the bench's seeded
history) have none, and an account's chain starts at its first hashed entry.
`accounts.last_hash` is the head of the account's chain, updated with its balance.
`seals` is append-only, as the journal is.

Revision ID: 0015_journal_chains
Revises: 0014_wallet_token_issuers
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0015_journal_chains"
down_revision: str | None = "0014_wallet_token_issuers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"


def upgrade() -> None:
    op.add_column("entries", sa.Column("hash", sa.LargeBinary(), nullable=True))
    op.add_column("accounts", sa.Column("last_hash", sa.LargeBinary(), nullable=True))
    op.create_table(
        "seals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column(
            "sealed_at", sa.DateTime(timezone=True), server_default=text("now()"), nullable=False
        ),
        sa.Column("entries_through", sa.BigInteger(), nullable=False),
        sa.Column("account_count", sa.Integer(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_seals_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seals")),
    )
    op.create_index("ix_seals_tenant_id_id", "seals", ["tenant_id", "id"])
    op.execute(
        """
        CREATE FUNCTION seals_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'seals are append-only: % refused', TG_OP
                USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals
        FOR EACH ROW EXECUTE FUNCTION seals_are_immutable()
        """
    )
    op.execute("ALTER TABLE seals ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE seals FORCE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY service_all ON seals TO CURRENT_USER USING (true) WITH CHECK (true)")
    op.execute(
        f"CREATE POLICY tenant_isolation ON seals TO {API_ROLE}"
        " USING (tenant_id = tally_current_tenant())"
        " WITH CHECK (tenant_id = tally_current_tenant())"
    )
    op.execute(f"GRANT SELECT ON seals TO {API_ROLE}")


def downgrade() -> None:
    op.drop_table("seals")
    op.execute("DROP FUNCTION seals_are_immutable()")
    op.drop_column("accounts", "last_hash")
    op.drop_column("entries", "hash")
