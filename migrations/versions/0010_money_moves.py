"""Money that moves like a merchant's: split legs, payouts, exchanges, journal entries, and
system accounts a tenant defines.

Transactions gain `splits` (legs of a spend, transfer, hold, capture or refund), `to_account`
(a hold's system account destination), `payout_method` and `destination` (payouts),
`to_asset_code` and `to_amount` (exchanges) and `postings` (journal entries); the checks on
which type carries what follow. `system_accounts` lists the names a tenant defined; their
accounts are `accounts` rows like the built-ins', whose owner may now be any `@name`. Every
existing asset gets the two new built-ins, `@payouts` and `@exchange`. A hold that splits has
no single destination account.

The downgrade refuses a database holding any of the new kinds (it would have to drop money).

Revision ID: 0010_money_moves
Revises: 0009_api_login
Create Date: 2026-12-07 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0010_money_moves"
down_revision: str | None = "0009_api_login"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As they were when this migration was written (a migration never changes).
MAX_AMOUNT = 2**127 - 1
NAME = "@[a-z0-9_]{1,32}"
API_ROLE = "tally_api"
OLD_TYPES = (
    "topup",
    "bonus",
    "spend",
    "refund",
    "transfer",
    "adjustment",
    "hold",
    "capture",
    "void",
)
TYPES = (*OLD_TYPES, "payout", "exchange", "journal")
OLD_SYSTEM = ("@topup", "@bonus", "@revenue", "@adjustments")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# name -> (condition after the upgrade, condition before it)
CHANGED_CHECKS = {
    "type_known": (_in("type", TYPES), _in("type", OLD_TYPES)),
    "amount_sign": (
        "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)"
        " OR (type IN ('capture', 'void', 'journal') AND amount IS NULL)",
        "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)"
        " OR (type IN ('capture', 'void') AND amount IS NULL)",
    ),
    "amount_when_applied": (
        "amount IS NOT NULL OR type = 'journal'"
        " OR (type IN ('capture', 'void') AND status <> 'applied')",
        "amount IS NOT NULL OR (type IN ('capture', 'void') AND status <> 'applied')",
    ),
    "wallet_named": (
        "(user_id IS NOT NULL AND asset_code IS NOT NULL)"
        " OR type IN ('capture', 'void', 'journal')",
        "(user_id IS NOT NULL AND asset_code IS NOT NULL) OR type IN ('capture', 'void')",
    ),
    "to_user_for_transfers_and_holds": (
        "(type <> 'transfer' OR to_user_id IS NOT NULL OR splits IS NOT NULL)"
        " AND (to_user_id IS NULL"
        " OR type IN ('transfer', 'hold', 'capture', 'refund', 'exchange'))",
        "(type <> 'transfer' OR to_user_id IS NOT NULL)"
        " AND (to_user_id IS NULL OR type IN ('transfer', 'hold', 'capture', 'refund'))",
    ),
    "adjustment_reason": (
        "type NOT IN ('adjustment', 'journal') OR reason IS NOT NULL",
        "type <> 'adjustment' OR reason IS NOT NULL",
    ),
}
NEW_CHECKS = {
    "splits_for_split_types": (
        "splits IS NULL OR (type IN ('spend', 'transfer', 'hold', 'capture', 'refund')"
        " AND jsonb_typeof(splits) = 'array')"
    ),
    "to_account_for_holds": (
        f"to_account IS NULL OR (type IN ('hold', 'capture') AND to_account ~ '^{NAME}$')"
    ),
    "payout_fields": "(payout_method IS NULL AND destination IS NULL) OR type = 'payout'",
    "exchange_fields": (
        "(type = 'exchange') = (to_asset_code IS NOT NULL AND to_amount IS NOT NULL)"
        f" AND (to_amount IS NULL OR to_amount BETWEEN 1 AND {MAX_AMOUNT})"
    ),
    "postings_for_journals": (
        "(type = 'journal') = (postings IS NOT NULL)"
        " AND (postings IS NULL OR jsonb_typeof(postings) = 'array')"
    ),
}
OWNER_KIND = f"is_system = (owner LIKE '@%') AND (NOT is_system OR owner ~ '^{NAME}$')"
OLD_OWNER_KIND = f"is_system = (owner LIKE '@%') AND (NOT is_system OR {_in('owner', OLD_SYSTEM)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{name}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_{name} CHECK ({condition})")


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE transactions
            ADD COLUMN splits jsonb, ADD COLUMN to_account text, ADD COLUMN payout_method text,
            ADD COLUMN destination text, ADD COLUMN to_asset_code text,
            ADD COLUMN to_amount numeric(39,0), ADD COLUMN postings jsonb
        """
    )
    for name, (condition, _) in CHANGED_CHECKS.items():
        _replace_check("transactions", name, condition)
    for name, condition in NEW_CHECKS.items():
        op.execute(
            f"ALTER TABLE transactions ADD CONSTRAINT ck_transactions_{name} CHECK ({condition})"
        )
    op.create_foreign_key(
        "fk_transactions_to_asset",
        "transactions",
        "assets",
        ["tenant_id", "to_asset_code"],
        ["tenant_id", "code"],
    )
    _replace_check("accounts", "owner_kind", OWNER_KIND)
    op.alter_column("holds", "destination_account_id", nullable=True)
    op.create_table(
        "system_accounts",
        sa.Column("tenant_id", UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=text("now()"), nullable=False
        ),
        sa.CheckConstraint(f"name ~ '^{NAME}$'", name=op.f("ck_system_accounts_name_format")),
        sa.CheckConstraint(
            "length(description) <= 500", name=op.f("ck_system_accounts_description_length")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_system_accounts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_system_accounts")),
    )
    op.execute("ALTER TABLE system_accounts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE system_accounts FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY service_all ON system_accounts TO CURRENT_USER USING (true) WITH CHECK (true)"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON system_accounts TO {API_ROLE}"
        " USING (tenant_id = tally_current_tenant())"
        " WITH CHECK (tenant_id = tally_current_tenant())"
    )
    op.execute(f"GRANT SELECT, INSERT ON system_accounts TO {API_ROLE}")
    op.execute(
        """
        INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
        SELECT a.tenant_id, a.code, o.owner, true
        FROM assets a CROSS JOIN (VALUES ('@payouts'), ('@exchange')) AS o(owner)
        ORDER BY a.tenant_id, a.code, o.owner
        ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING
        """
    )


def downgrade() -> None:
    conn = op.get_bind()
    in_use = conn.execute(
        text(
            """
            SELECT (SELECT count(*) FROM transactions
                    WHERE type IN ('payout', 'exchange', 'journal') OR splits IS NOT NULL
                       OR to_account IS NOT NULL)
                 + (SELECT count(*) FROM system_accounts)
                 + (SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id
                    WHERE a.owner IN ('@payouts', '@exchange'))
            """
        )
    ).scalar_one()
    if in_use:
        raise RuntimeError(
            "cannot downgrade below 0010_money_moves: the ledger holds split, payout, exchange"
            " or journal transactions, or system accounts a tenant defined"
        )
    op.drop_table("system_accounts")
    op.execute("DELETE FROM accounts WHERE owner IN ('@payouts', '@exchange')")
    op.alter_column("holds", "destination_account_id", nullable=False)
    _replace_check("accounts", "owner_kind", OLD_OWNER_KIND)
    op.drop_constraint("fk_transactions_to_asset", "transactions", type_="foreignkey")
    for name in NEW_CHECKS:
        op.execute(f"ALTER TABLE transactions DROP CONSTRAINT ck_transactions_{name}")
    for name, (_, condition) in CHANGED_CHECKS.items():
        _replace_check("transactions", name, condition)
    op.execute(
        """
        ALTER TABLE transactions
            DROP COLUMN splits, DROP COLUMN to_account, DROP COLUMN payout_method,
            DROP COLUMN destination, DROP COLUMN to_asset_code, DROP COLUMN to_amount,
            DROP COLUMN postings
        """
    )
