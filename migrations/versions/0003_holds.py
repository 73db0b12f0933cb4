"""Two-phase holds: hold, capture and void transactions, and the holds they manage.

A hold reserves funds on a wallet (its `pending` grows) until it is captured, voided or
expires. Captures and voids name their hold; intake copies the hold's wallet onto them,
so a capture or void of an unknown hold carries no wallet (and is rejected
`hold_not_found`), and a capture without an amount takes the whole hold, filled in when
it is applied. A refund of a capture that paid a wallet carries that wallet in
`to_user_id`: the money comes back from where it went.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENT_TYPES = "'transaction.applied', 'transaction.rejected', 'transaction.failed'"
EVENT_TYPES = OLD_EVENT_TYPES + ", 'hold.captured', 'hold.voided', 'hold.expired'"

# (constraint, old text, new text) on transactions.
TRANSACTION_CHECKS = [
    (
        "type_known",
        "type IN ('topup', 'bonus', 'spend', 'refund', 'transfer', 'adjustment')",
        "type IN ('topup', 'bonus', 'spend', 'refund', 'transfer', 'adjustment',"
        " 'hold', 'capture', 'void')",
    ),
    (
        "amount_sign",
        "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)",
        "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)"
        " OR (type IN ('capture', 'void') AND amount IS NULL)",
    ),
    (
        "original_only_for_refund",
        "(type = 'refund') = (original_transaction_id IS NOT NULL)",
        None,
    ),
    (
        "to_user_only_for_transfer",
        "(type = 'transfer') = (to_user_id IS NOT NULL)",
        None,
    ),
]
NEW_TRANSACTION_CHECKS = [
    (
        "original_when_named",
        "(type IN ('refund', 'capture', 'void')) = (original_transaction_id IS NOT NULL)",
    ),
    (
        "to_user_for_transfers_and_holds",
        "(type <> 'transfer' OR to_user_id IS NOT NULL)"
        " AND (to_user_id IS NULL OR type IN ('transfer', 'hold', 'capture', 'refund'))",
    ),
    (
        "amount_when_applied",
        "amount IS NOT NULL OR (type IN ('capture', 'void') AND status <> 'applied')",
    ),
    (
        "wallet_named",
        "(user_id IS NOT NULL AND asset_code IS NOT NULL) OR type IN ('capture', 'void')",
    ),
    ("expiry_for_holds", "(type = 'hold') = (expires_at IS NOT NULL)"),
]


def _replace_check(table: str, name: str, sql: str | None) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    if sql is not None:
        op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, sql)


def upgrade() -> None:
    op.add_column("transactions", sa.Column("expires_at", sa.DateTime(timezone=True)))
    for column in ("amount", "user_id", "asset_code"):
        op.alter_column("transactions", column, nullable=True)
    for name, _old, new in TRANSACTION_CHECKS:
        _replace_check("transactions", name, new)
    for name, sql in NEW_TRANSACTION_CHECKS:
        op.create_check_constraint(op.f(f"ck_transactions_{name}"), "transactions", sql)

    op.create_table(
        "holds",
        sa.Column("transaction_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("destination_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'held'"), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=True),
        sa.Column("captured_by", sa.UUID(), nullable=True),
        sa.Column("voided_by", sa.UUID(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
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
            "status IN ('held', 'captured', 'voided', 'expired')",
            name=op.f("ck_holds_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_holds_amount_positive")),
        sa.CheckConstraint(
            "(status = 'captured') = (captured_by IS NOT NULL AND captured_amount IS NOT NULL)",
            name=op.f("ck_holds_captured_when_captured"),
        ),
        sa.CheckConstraint(
            "captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount",
            name=op.f("ck_holds_capture_within_hold"),
        ),
        sa.CheckConstraint(
            "(status = 'voided') = (voided_by IS NOT NULL)",
            name=op.f("ck_holds_voided_when_voided"),
        ),
        sa.CheckConstraint(
            "(status = 'held') = (released_at IS NULL)", name=op.f("ck_holds_released_when_final")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_holds_transaction_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_holds_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["destination_account_id"],
            ["accounts.id"],
            name=op.f("fk_holds_destination_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["captured_by"], ["transactions.id"], name=op.f("fk_holds_captured_by_transactions")
        ),
        sa.ForeignKeyConstraint(
            ["voided_by"], ["transactions.id"], name=op.f("fk_holds_voided_by_transactions")
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_holds")),
    )
    op.create_index(
        "ix_holds_due", "holds", ["expires_at"], postgresql_where=sa.text("status = 'held'")
    )
    op.create_index("ix_holds_account_id_seq", "holds", ["account_id", "seq"])

    for table, name, column in (
        ("events", "type_known", "type"),
        ("webhook_deliveries", "event_type_known", "event_type"),
    ):
        extra = ", 'webhook.test'" if table == "webhook_deliveries" else ""
        _replace_check(table, name, f"{column} IN ({EVENT_TYPES}{extra})")
    _replace_check(
        "webhook_endpoints",
        "event_types_known",
        f"cardinality(event_types) >= 1 AND event_types <@ ARRAY[{EVENT_TYPES}]::text[]",
    )


def downgrade() -> None:
    for table, name, column in (
        ("events", "type_known", "type"),
        ("webhook_deliveries", "event_type_known", "event_type"),
    ):
        extra = ", 'webhook.test'" if table == "webhook_deliveries" else ""
        _replace_check(table, name, f"{column} IN ({OLD_EVENT_TYPES}{extra})")
    _replace_check(
        "webhook_endpoints",
        "event_types_known",
        f"cardinality(event_types) >= 1 AND event_types <@ ARRAY[{OLD_EVENT_TYPES}]::text[]",
    )
    op.drop_table("holds")
    for name, _sql in NEW_TRANSACTION_CHECKS:
        op.drop_constraint(op.f(f"ck_transactions_{name}"), "transactions", type_="check")
    for name, old, new in TRANSACTION_CHECKS:
        if new is not None:
            op.drop_constraint(op.f(f"ck_transactions_{name}"), "transactions", type_="check")
        op.create_check_constraint(op.f(f"ck_transactions_{name}"), "transactions", old)
    for column in ("amount", "user_id", "asset_code"):
        op.alter_column("transactions", column, nullable=False)
    op.drop_column("transactions", "expires_at")
