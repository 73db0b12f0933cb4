"""Ledger schema: tenants, keys, assets, accounts, transactions, journal, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 19:36:33.851650
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORBID_JOURNAL_CHANGES = """
CREATE FUNCTION entries_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal entries are immutable: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER entries_no_update_or_delete BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_are_immutable();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION entries_are_immutable();
"""

ALLOW_JOURNAL_CHANGES = """
DROP TRIGGER entries_no_truncate ON entries;
DROP TRIGGER entries_no_update_or_delete ON entries;
DROP FUNCTION entries_are_immutable();
"""


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_tenants_name_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"], unique=False)
    op.create_table(
        "assets",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("decimal_places", sa.SmallInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[A-Z0-9_]{1,32}$'", name=op.f("ck_assets_code_format")),
        sa.CheckConstraint(
            "decimal_places BETWEEN 0 AND 18", name=op.f("ck_assets_decimal_places_range")
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_assets_name_length")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_assets_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "code", name=op.f("pk_assets")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("asset_code", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("credit_limit", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pending", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "is_system = (owner LIKE '@%%') AND (NOT is_system OR owner IN ('@topup', '@bonus', '@revenue', '@adjustments'))",
            name=op.f("ck_accounts_owner_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'frozen', 'closed')", name=op.f("ck_accounts_status_known")
        ),
        sa.CheckConstraint("credit_limit >= 0", name=op.f("ck_accounts_credit_limit_non_negative")),
        sa.CheckConstraint(
            "is_system OR balance >= -credit_limit", name=op.f("ck_accounts_within_credit_limit")
        ),
        sa.CheckConstraint(
            "length(owner) BETWEEN 1 AND 128", name=op.f("ck_accounts_owner_length")
        ),
        sa.CheckConstraint("pending >= 0", name=op.f("ck_accounts_pending_non_negative")),
        sa.CheckConstraint("version >= 0", name=op.f("ck_accounts_version_non_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "asset_code"],
            ["assets.tenant_id", "assets.code"],
            name="fk_accounts_asset",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint(
            "tenant_id", "asset_code", "owner", name=op.f("uq_accounts_tenant_id_asset_code_owner")
        ),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("reference_id", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("result_code", sa.Text(), nullable=True),
        sa.Column("result_message", sa.Text(), nullable=True),
        sa.Column("asset_code", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("to_user_id", sa.Text(), nullable=True),
        sa.Column("original_transaction_id", sa.UUID(), nullable=True),
        sa.Column("payment_method", sa.Text(), nullable=True),
        sa.Column("bonus_type", sa.Text(), nullable=True),
        sa.Column("item_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("publish_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'queued') = (completed_at IS NULL)",
            name=op.f("ck_transactions_completed_when_final"),
        ),
        sa.CheckConstraint(
            "(status IN ('rejected', 'failed')) = (result_code IS NOT NULL)",
            name=op.f("ck_transactions_code_when_not_applied"),
        ),
        sa.CheckConstraint(
            "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)",
            name=op.f("ck_transactions_amount_sign"),
        ),
        sa.CheckConstraint(
            "abs(amount) <= 9007199254740991", name=op.f("ck_transactions_amount_within_limit")
        ),
        sa.CheckConstraint(
            "(type = 'refund') = (original_transaction_id IS NOT NULL)",
            name=op.f("ck_transactions_original_only_for_refund"),
        ),
        sa.CheckConstraint(
            "(type = 'transfer') = (to_user_id IS NOT NULL)",
            name=op.f("ck_transactions_to_user_only_for_transfer"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'applied', 'rejected', 'failed')",
            name=op.f("ck_transactions_status_known"),
        ),
        sa.CheckConstraint(
            "type <> 'adjustment' OR reason IS NOT NULL",
            name=op.f("ck_transactions_adjustment_reason"),
        ),
        sa.CheckConstraint(
            "type IN ('topup', 'bonus', 'spend', 'refund', 'transfer', 'adjustment')",
            name=op.f("ck_transactions_type_known"),
        ),
        sa.CheckConstraint(
            "length(reference_id) BETWEEN 1 AND 128",
            name=op.f("ck_transactions_reference_id_length"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "asset_code"],
            ["assets.tenant_id", "assets.code"],
            name="fk_transactions_asset",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_transactions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("seq", name=op.f("uq_transactions_seq")),
        sa.UniqueConstraint(
            "tenant_id", "reference_id", name=op.f("uq_transactions_tenant_id_reference_id")
        ),
    )
    op.create_index(
        "ix_transactions_original",
        "transactions",
        ["original_transaction_id"],
        unique=False,
        postgresql_where=sa.text("original_transaction_id IS NOT NULL"),
    )
    op.create_index(
        "ix_transactions_queued",
        "transactions",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("transaction_id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("account_version", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_entries_amount_non_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_entries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_entries_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
        sa.UniqueConstraint(
            "account_id", "account_version", name=op.f("uq_entries_account_id_account_version")
        ),
    )
    op.create_index(op.f("ix_entries_transaction_id"), "entries", ["transaction_id"], unique=False)
    # The journal is append-only: corrections are new transactions, never edits.
    op.execute(FORBID_JOURNAL_CHANGES)
    op.create_table(
        "events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.UUID(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "type IN ('transaction.applied', 'transaction.rejected', 'transaction.failed')",
            name=op.f("ck_events_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_events_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_events_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(
        op.f("ix_events_tenant_id_created_at"), "events", ["tenant_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_events_transaction_id"), "events", ["transaction_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_transaction_id"), table_name="events")
    op.drop_index(op.f("ix_events_tenant_id_created_at"), table_name="events")
    op.drop_table("events")
    op.execute(ALLOW_JOURNAL_CHANGES)
    op.drop_index(op.f("ix_entries_transaction_id"), table_name="entries")
    op.drop_table("entries")
    op.drop_index(
        "ix_transactions_queued",
        table_name="transactions",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_index(
        "ix_transactions_original",
        table_name="transactions",
        postgresql_where=sa.text("original_transaction_id IS NOT NULL"),
    )
    op.drop_table("transactions")
    op.drop_table("accounts")
    op.drop_table("assets")
    op.drop_index(op.f("ix_api_keys_tenant_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
