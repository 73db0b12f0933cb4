"""Money is 128-bit: amounts, wallet balances, pending amounts and credit limits become
numeric(39,0) bounded by CHECK constraints to ±(2**127 - 1); system account balances (and
the balance after of every entry, which may be a system account's) become numeric(1000,0)
with no ceiling, so a system account never blocks a transaction on its own size.

Each table is rewritten once (one ALTER TABLE per table). Downgrading turns the columns
back into bigint and restores the 2**53 - 1 bound on amounts; it refuses, before changing
anything, a database holding money beyond those bounds.

Revision ID: 0007_money_128
Revises: 0006
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0007_money_128"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ledger.money.MAX_AMOUNT when this migration was written (a migration never changes).
MAX_AMOUNT = 2**127 - 1
MONEY = "numeric(39,0)"
UNBOUNDED = "numeric(1000,0)"
# The bound on amounts before this migration: 2**53 - 1.
OLD_MAX_AMOUNT = 9007199254740991
BIGINT_MAX = 2**63 - 1

# (table, constraint name, condition) added by the upgrade.
CHECKS = [
    ("accounts", "credit_limit_within_limit", f"credit_limit <= {MAX_AMOUNT}"),
    ("accounts", "pending_within_limit", f"pending <= {MAX_AMOUNT}"),
    (
        "accounts",
        "wallet_balance_within_limit",
        f"is_system OR balance BETWEEN {-MAX_AMOUNT} AND {MAX_AMOUNT}",
    ),
    ("entries", "amount_within_limit", f"abs(amount) <= {MAX_AMOUNT}"),
    ("holds", "amount_within_limit", f"amount <= {MAX_AMOUNT}"),
]

# (table, column): what may not pass the old bounds when downgrading.
OLD_BOUNDS = [
    ("transactions", "amount", OLD_MAX_AMOUNT),
    ("accounts", "credit_limit", BIGINT_MAX),
    ("accounts", "pending", BIGINT_MAX),
    ("accounts", "balance", BIGINT_MAX),
    ("entries", "amount", BIGINT_MAX),
    ("entries", "balance_after", BIGINT_MAX),
    ("holds", "amount", BIGINT_MAX),
]


def _types(table: str, columns: dict[str, str]) -> None:
    changes = ", ".join(
        f"ALTER COLUMN {column} TYPE {kind} USING {column}::{kind}"
        for column, kind in columns.items()
    )
    op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    op.drop_constraint(op.f("ck_transactions_amount_within_limit"), "transactions", type_="check")
    _types("transactions", {"amount": MONEY})
    op.create_check_constraint(
        op.f("ck_transactions_amount_within_limit"), "transactions", f"abs(amount) <= {MAX_AMOUNT}"
    )
    _types("accounts", {"credit_limit": MONEY, "balance": UNBOUNDED, "pending": MONEY})
    _types("entries", {"amount": MONEY, "balance_after": UNBOUNDED})
    _types("holds", {"amount": MONEY, "captured_amount": MONEY})
    for table, name, condition in CHECKS:
        op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def downgrade() -> None:
    connection = op.get_bind()
    for table, column, bound in OLD_BOUNDS:
        beyond = connection.execute(
            text(f"SELECT count(*) FROM {table} WHERE abs({column}) > {bound}")
        ).scalar_one()
        if beyond:
            raise RuntimeError(
                f"cannot downgrade below 0007_money_128: {beyond} rows of {table} hold a"
                f" {column} beyond {bound}, which the older schema cannot store"
            )
    for table, name, _ in reversed(CHECKS):
        op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    _types("holds", {"amount": "bigint", "captured_amount": "bigint"})
    _types("entries", {"amount": "bigint", "balance_after": "bigint"})
    _types("accounts", {"credit_limit": "bigint", "balance": "bigint", "pending": "bigint"})
    op.drop_constraint(op.f("ck_transactions_amount_within_limit"), "transactions", type_="check")
    _types("transactions", {"amount": "bigint"})
    op.create_check_constraint(
        op.f("ck_transactions_amount_within_limit"),
        "transactions",
        f"abs(amount) <= {OLD_MAX_AMOUNT}",
    )
