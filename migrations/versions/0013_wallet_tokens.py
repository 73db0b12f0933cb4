"""Wallet tokens: each tenant's Ed25519 signing keys (private halves sealed at rest), the
tokens issued with them, and row-level security for a wallet owner's requests.

A request made with a wallet token binds `tally.user_id` beside `tally.tenant_id`
(ledger/db.py). Restrictive policies then narrow what the API role reads to that user's
wallet: its accounts (and the tenant's system accounts), their entries and holds, and
the transactions naming the user. With no user bound (every API-key request) each of
them is true at once, from an init plan evaluated once per query, not per row.

Revision ID: 0013_wallet_tokens
Revises: 0012_period_grants
Create Date: 2026-12-08 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0013_wallet_tokens"
down_revision: str | None = "0012_period_grants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"
MONEY = sa.Numeric(39, 0)
# `(SELECT tally_current_user())`: a scalar subquery is an init plan, computed once.
USER = "(SELECT tally_current_user())"
NO_USER = f"{USER} IS NULL"
USERS_ACCOUNTS = f"SELECT a.id FROM accounts a WHERE a.owner = {USER} AND NOT a.is_system"
# What a request bound to a user may read, by table.
USER_POLICIES = {
    "accounts": f"{NO_USER} OR owner = {USER} OR is_system",
    "transactions": f"{NO_USER} OR user_id = {USER} OR to_user_id = {USER}",
    "entries": f"{NO_USER} OR account_id IN ({USERS_ACCOUNTS})",
    "holds": f"{NO_USER} OR account_id IN ({USERS_ACCOUNTS})",
}


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
        "wallet_token_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_wallet_token_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_token_keys")),
    )
    op.create_index(
        "uq_wallet_token_keys_current",
        "wallet_token_keys",
        ["tenant_id"],
        unique=True,
        postgresql_where=text("retired_at IS NULL"),
    )
    op.create_table(
        "wallet_tokens",
        sa.Column("id", UUID(), server_default=text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("scopes", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("asset_codes", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("max_amount", MONEY, nullable=True),
        sa.Column("spend_limit", MONEY, nullable=True),
        sa.Column("spent", MONEY, server_default=text("0"), nullable=False),
        sa.Column("issued_by", UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("spent >= 0", name=op.f("ck_wallet_tokens_spent_not_negative")),
        sa.CheckConstraint(
            "spend_limit IS NULL OR spent <= spend_limit",
            name=op.f("ck_wallet_tokens_spent_within_limit"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_wallet_tokens_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["wallet_token_keys.id"],
            name=op.f("fk_wallet_tokens_key_id_wallet_token_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["issued_by"], ["api_keys.id"], name=op.f("fk_wallet_tokens_issued_by_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_tokens")),
    )
    op.create_index(
        op.f("ix_wallet_tokens_tenant_id_user_id"), "wallet_tokens", ["tenant_id", "user_id"]
    )
    op.create_index(op.f("ix_wallet_tokens_key_id"), "wallet_tokens", ["key_id"])
    _tenant_table("wallet_token_keys", "SELECT, INSERT, UPDATE")
    _tenant_table("wallet_tokens", "SELECT, INSERT, UPDATE")
    # No arguments, so nothing of a row can leak through it; STABLE, not LEAKPROOF.
    op.execute(
        """
        CREATE FUNCTION tally_current_user() RETURNS text LANGUAGE sql STABLE AS $$
            SELECT nullif(current_setting('tally.user_id', true), '')
        $$
        """
    )
    for table, condition in USER_POLICIES.items():
        op.execute(
            f"CREATE POLICY wallet_owner ON {table} AS RESTRICTIVE FOR SELECT TO {API_ROLE}"
            f" USING ({condition})"
        )


def downgrade() -> None:
    for table in USER_POLICIES:
        op.execute(f"DROP POLICY wallet_owner ON {table}")
    op.execute("DROP FUNCTION tally_current_user()")
    op.drop_table("wallet_tokens")
    op.drop_table("wallet_token_keys")
