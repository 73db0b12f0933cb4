"""Wallet tokens from a merchant's own issuer, and each tenant's CORS origins.

`wallet_token_issuers` holds a tenant's uploaded JWKS (public keys only) and the
algorithms it allows. A token of such an issuer is recorded in `wallet_tokens` on its
first verified use, keyed by (tenant, issuer, jti), so its spend limit is counted and it
is revoked as a Tally-issued token is: exactly one of `key_id` (Tally's key) and
`issuer_id` is set. An issuer removed is only marked (`deleted_at`): its tokens' records,
their spending and revocations, stay, and registering the same `iss` again revives it.

`cors_origins` lists the browser origins a tenant's wallet tokens may be used from. A
preflight carries no credential, so it asks whether any tenant allows an origin through
`tally_origin_allowed`, which runs as the owner (SECURITY DEFINER) and answers only yes
or no.

Revision ID: 0014_wallet_token_issuers
Revises: 0013_wallet_tokens
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0014_wallet_token_issuers"
down_revision: str | None = "0013_wallet_tokens"
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
    now = text("now()")
    op.create_table(
        "wallet_token_issuers",
        sa.Column("id", UUID(), server_default=text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("iss", sa.Text(), nullable=False),
        sa.Column("algorithms", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("jwks", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_wallet_token_issuers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_token_issuers")),
        sa.UniqueConstraint("tenant_id", "iss", name=op.f("uq_wallet_token_issuers_tenant_id_iss")),
    )
    _tenant_table("wallet_token_issuers", "SELECT, INSERT, UPDATE")

    op.alter_column("wallet_tokens", "key_id", nullable=True)
    op.add_column("wallet_tokens", sa.Column("issuer_id", UUID(), nullable=True))
    op.add_column("wallet_tokens", sa.Column("jti", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_wallet_tokens_issuer_id_wallet_token_issuers"),
        "wallet_tokens",
        "wallet_token_issuers",
        ["issuer_id"],
        ["id"],
    )
    op.create_check_constraint(
        op.f("ck_wallet_tokens_one_signer"),
        "wallet_tokens",
        "(key_id IS NULL) <> (issuer_id IS NULL) AND (issuer_id IS NULL) = (jti IS NULL)",
    )
    op.create_index(
        "uq_wallet_tokens_issuer_jti",
        "wallet_tokens",
        ["tenant_id", "issuer_id", "jti"],
        unique=True,
        postgresql_where=text("issuer_id IS NOT NULL"),
    )

    op.create_table(
        "cors_origins",
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_cors_origins_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "origin", name=op.f("pk_cors_origins")),
    )
    op.create_index(op.f("ix_cors_origins_origin"), "cors_origins", ["origin"])
    _tenant_table("cors_origins", "SELECT, INSERT, DELETE")
    op.execute(
        """
        CREATE FUNCTION tally_origin_allowed(p_origin text) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT EXISTS (SELECT 1 FROM cors_origins WHERE origin = p_origin)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tally_origin_allowed(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION tally_origin_allowed(text) TO {API_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION tally_origin_allowed(text)")
    op.drop_table("cors_origins")
    # Tokens of merchants' issuers cannot be kept without their issuers.
    op.execute("DELETE FROM wallet_tokens WHERE issuer_id IS NOT NULL")
    op.drop_index("uq_wallet_tokens_issuer_jti", table_name="wallet_tokens")
    op.drop_constraint(op.f("ck_wallet_tokens_one_signer"), "wallet_tokens")
    op.drop_constraint(op.f("fk_wallet_tokens_issuer_id_wallet_token_issuers"), "wallet_tokens")
    op.drop_column("wallet_tokens", "jti")
    op.drop_column("wallet_tokens", "issuer_id")
    op.alter_column("wallet_tokens", "key_id", nullable=False)
    op.drop_table("wallet_token_issuers")
