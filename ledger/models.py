"""Tables of the ledger. Alembic migrations create them; these mappings mirror them exactly.

The webhook tables are in ledger/webhooks/models.py; ledger/schema.py gathers every table
(the metadata Alembic and the schema test compare against)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from ledger.money import MAX_AMOUNT
from ledger.vocabulary import (
    SYSTEM_ACCOUNT_NAME,
    AccountStatus,
    EventType,
    HoldStatus,
    TransactionStatus,
    TransactionType,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def in_values(column: str, values: Iterable[str]) -> str:
    """A CHECK clause: the column holds one of the values."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


UUID_DEFAULT = text("gen_random_uuid()")
# Money (ledger/money.py): amounts, wallet balances, pending amounts and credit limits are
# bounded to ±MAX_AMOUNT by CHECK constraints; a system account's balance (and an entry's
# balance after, which may be one) has no ceiling, so it is stored as wide as PostgreSQL goes.
MONEY = Numeric(39, 0)
UNBOUNDED_MONEY = Numeric(1000, 0)
NOW = text("now()")


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id, read back as the text of an integer."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


ischema_names["xid8"] = Xid8


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # Requests per second each of the tenant's keys may make; NULL: TALLY_RATE_LIMIT_PER_SECOND.
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    # Nothing may land at or before this time (ledger/periods.py); NULL: nothing is closed.
    closed_through: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
        CheckConstraint(
            "rate_limit_per_second IS NULL OR rate_limit_per_second > 0",
            name="rate_limit_positive",
        ),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    # SHA-256 of the whole key: keys are 256-bit random, so a slow hash buys nothing.
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    prefix: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # admin, write or read (api/permissions.py says what each may do).
    scope: Mapped[str] = mapped_column(Text, server_default=text("'write'"))
    # Stamped by tally_authenticate at most once a minute.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id"),
        CheckConstraint("scope IN ('admin', 'write', 'read')", name="scope_known"),
    )


class Asset(Base):
    __tablename__ = "assets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    decimal_places: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        CheckConstraint("code ~ '^[A-Z0-9_]{1,32}$'", name="code_format"),
        CheckConstraint("decimal_places BETWEEN 0 AND 18", name="decimal_places_range"),
        CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
    )


class Account(Base):
    """A wallet (`owner` is the user id) or a system account (`owner` starts with `@`)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    asset_code: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    is_system: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(Text, server_default=text("'active'"))
    credit_limit: Mapped[int] = mapped_column(MONEY, server_default=text("0"))
    balance: Mapped[int] = mapped_column(UNBOUNDED_MONEY, server_default=text("0"))
    pending: Mapped[int] = mapped_column(MONEY, server_default=text("0"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # The head of the account's hash chain (ledger/chains.py): its last entry's hash.
    last_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "asset_code"],
            ["assets.tenant_id", "assets.code"],
            name="fk_accounts_asset",
        ),
        UniqueConstraint("tenant_id", "asset_code", "owner"),
        CheckConstraint(in_values("status", AccountStatus), name="status_known"),
        CheckConstraint(
            "is_system = (owner LIKE '@%')"
            f" AND (NOT is_system OR owner ~ '^{SYSTEM_ACCOUNT_NAME}$')",
            name="owner_kind",
        ),
        CheckConstraint("length(owner) BETWEEN 1 AND 128", name="owner_length"),
        CheckConstraint("credit_limit >= 0", name="credit_limit_non_negative"),
        CheckConstraint(f"credit_limit <= {MAX_AMOUNT}", name="credit_limit_within_limit"),
        CheckConstraint("pending >= 0", name="pending_non_negative"),
        CheckConstraint(f"pending <= {MAX_AMOUNT}", name="pending_within_limit"),
        # System accounts have no ceiling either: they never block on their own size.
        CheckConstraint(
            f"is_system OR balance BETWEEN {-MAX_AMOUNT} AND {MAX_AMOUNT}",
            name="wallet_balance_within_limit",
        ),
        # Invariant 4: a wallet never goes below its credit limit. System accounts are
        # the other side of every movement and have no floor.
        CheckConstraint("is_system OR balance >= -credit_limit", name="within_credit_limit"),
        CheckConstraint("version >= 0", name="version_non_negative"),
    )


class SystemAccountName(Base):
    """A system account a tenant defined (`@fees`), beside the built-ins; its accounts, one
    per asset, are rows of `accounts` like every other."""

    __tablename__ = "system_accounts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        CheckConstraint(f"name ~ '^{SYSTEM_ACCOUNT_NAME}$'", name="name_format"),
        CheckConstraint("length(description) <= 500", name="description_length"),
    )


class Transaction(Base):
    __tablename__ = "transactions"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    # Acceptance order: workers apply queued transactions in this order.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(Text)
    reference_id: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    result_code: Mapped[str | None] = mapped_column(Text)
    result_message: Mapped[str | None] = mapped_column(Text)
    # Null only on a capture or void whose hold does not exist (it is rejected), and on a
    # capture that takes the whole hold until it is applied.
    asset_code: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int | None] = mapped_column(MONEY)
    user_id: Mapped[str | None] = mapped_column(Text)
    to_user_id: Mapped[str | None] = mapped_column(Text)
    original_transaction_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    payment_method: Mapped[str | None] = mapped_column(Text)
    bonus_type: Mapped[str | None] = mapped_column(Text)
    item_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Legs ({"to_user_id" | "to_account", "amount"}) of a split spend, transfer, hold or
    # capture, and of a refund: as requested until applied, then as applied.
    splits: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # A hold's (and its capture's) system account destination, instead of a wallet.
    to_account: Mapped[str | None] = mapped_column(Text)
    payout_method: Mapped[str | None] = mapped_column(Text)
    destination: Mapped[str | None] = mapped_column(Text)
    # An exchange: what was bought, in which asset.
    to_asset_code: Mapped[str | None] = mapped_column(Text)
    to_amount: Mapped[int | None] = mapped_column(MONEY)
    # A journal entry's postings: [{"from", "to", "asset_code", "amount"}].
    postings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # When the movement counts for reporting, if the client said; else its application time.
    effective_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    publish_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Invariant 5 and the idempotency key of every submission.
        UniqueConstraint("tenant_id", "reference_id"),
        CheckConstraint(in_values("type", TransactionType), name="type_known"),
        CheckConstraint(in_values("status", TransactionStatus), name="status_known"),
        CheckConstraint(
            "(type = 'adjustment' AND amount <> 0) OR (type <> 'adjustment' AND amount > 0)"
            " OR (type IN ('capture', 'void', 'journal') AND amount IS NULL)",
            name="amount_sign",
        ),
        CheckConstraint(
            "amount IS NOT NULL OR type = 'journal'"
            " OR (type IN ('capture', 'void') AND status <> 'applied')",
            name="amount_when_applied",
        ),
        CheckConstraint(
            "(user_id IS NOT NULL AND asset_code IS NOT NULL)"
            " OR type IN ('capture', 'void', 'journal')",
            name="wallet_named",
        ),
        CheckConstraint("(type = 'hold') = (expires_at IS NOT NULL)", name="expiry_for_holds"),
        CheckConstraint(f"abs(amount) <= {MAX_AMOUNT}", name="amount_within_limit"),
        CheckConstraint(
            "(status = 'queued') = (completed_at IS NULL)", name="completed_when_final"
        ),
        CheckConstraint(
            "(status IN ('rejected', 'failed')) = (result_code IS NOT NULL)",
            name="code_when_not_applied",
        ),
        CheckConstraint("length(reference_id) BETWEEN 1 AND 128", name="reference_id_length"),
        CheckConstraint(
            "(type <> 'transfer' OR to_user_id IS NOT NULL OR splits IS NOT NULL)"
            " AND (to_user_id IS NULL"
            " OR type IN ('transfer', 'hold', 'capture', 'refund', 'exchange'))",
            name="to_user_for_transfers_and_holds",
        ),
        CheckConstraint(
            "(type IN ('refund', 'capture', 'void')) = (original_transaction_id IS NOT NULL)",
            name="original_when_named",
        ),
        CheckConstraint(
            "type NOT IN ('adjustment', 'journal') OR reason IS NOT NULL",
            name="adjustment_reason",
        ),
        CheckConstraint(
            "splits IS NULL OR (type IN ('spend', 'transfer', 'hold', 'capture', 'refund')"
            " AND jsonb_typeof(splits) = 'array')",
            name="splits_for_split_types",
        ),
        CheckConstraint(
            f"to_account IS NULL OR (type IN ('hold', 'capture')"
            f" AND to_account ~ '^{SYSTEM_ACCOUNT_NAME}$')",
            name="to_account_for_holds",
        ),
        CheckConstraint(
            "(payout_method IS NULL AND destination IS NULL) OR type = 'payout'",
            name="payout_fields",
        ),
        CheckConstraint(
            "(type = 'exchange') = (to_asset_code IS NOT NULL AND to_amount IS NOT NULL)"
            f" AND (to_amount IS NULL OR to_amount BETWEEN 1 AND {MAX_AMOUNT})",
            name="exchange_fields",
        ),
        CheckConstraint(
            "(type = 'journal') = (postings IS NOT NULL)"
            " AND (postings IS NULL OR jsonb_typeof(postings) = 'array')",
            name="postings_for_journals",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "asset_code"],
            ["assets.tenant_id", "assets.code"],
            name="fk_transactions_asset",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "to_asset_code"],
            ["assets.tenant_id", "assets.code"],
            name="fk_transactions_to_asset",
        ),
        # The relay's scan and the worker's claim read only the queued rows.
        Index(
            "ix_transactions_queued",
            "seq",
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "ix_transactions_original",
            "original_transaction_id",
            postgresql_where=text("original_transaction_id IS NOT NULL"),
        ),
        # The console's searches (migration 0006): newest first, within a time range, by
        # user on either side.
        Index("ix_transactions_tenant_created", "tenant_id", "created_at", "seq"),
        Index("ix_transactions_tenant_user", "tenant_id", "user_id", "created_at", "seq"),
        Index(
            "ix_transactions_tenant_to_user",
            "tenant_id",
            "to_user_id",
            "created_at",
            "seq",
            postgresql_where=text("to_user_id IS NOT NULL"),
        ),
        Index(
            "ix_transactions_tenant_completed",
            "tenant_id",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
        ),
    )


class Entry(Base):
    """An immutable journal line; positive credits the account, negative debits it."""

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(MONEY)
    balance_after: Mapped[int] = mapped_column(UNBOUNDED_MONEY)
    account_version: Mapped[int] = mapped_column(BigInteger)
    # When Tally recorded it (shown as `recorded_at`), and when it counts for reporting.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Chains the entry to its account's previous one; NULL for entries from before chains.
    hash: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        CheckConstraint(f"abs(amount) <= {MAX_AMOUNT}", name="amount_within_limit"),
        UniqueConstraint("account_id", "account_version"),
        Index(None, "transaction_id"),
        # Balances as of a time and statements read an account's entries in effective
        # order; reports read a tenant's.
        Index("ix_entries_account_id_effective_at", "account_id", "effective_at", "id"),
        Index("ix_entries_tenant_id_effective_at", "tenant_id", "effective_at"),
    )


class Hold(Base):
    """Funds a hold reserves on a wallet (its `pending`) until captured, voided or expired."""

    __tablename__ = "holds"

    transaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transactions.id"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    # The hold transaction's `seq`: the order of the wallet's holds list.
    seq: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # NULL for a hold that splits: its transaction's `splits` name the destinations.
    destination_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(Text, server_default=text("'held'"))
    captured_amount: Mapped[int | None] = mapped_column(MONEY)
    captured_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    voided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        CheckConstraint(in_values("status", HoldStatus), name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"amount <= {MAX_AMOUNT}", name="amount_within_limit"),
        CheckConstraint(
            "(status = 'captured') = (captured_by IS NOT NULL AND captured_amount IS NOT NULL)",
            name="captured_when_captured",
        ),
        CheckConstraint(
            "captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount",
            name="capture_within_hold",
        ),
        CheckConstraint("(status = 'voided') = (voided_by IS NOT NULL)", name="voided_when_voided"),
        CheckConstraint("(status = 'held') = (released_at IS NULL)", name="released_when_final"),
        # The sweeper's scan reads only the holds still held.
        Index("ix_holds_due", "expires_at", postgresql_where=text("status = 'held'")),
        Index("ix_holds_account_id_seq", "account_id", "seq"),
    )


class Event(Base):
    """Outbox: one row per status change of a transaction, written in the same commit."""

    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # The feed's order (migration 0016): the writing transaction's id, then insert order.
    xid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"))
    position: Mapped[int] = mapped_column(BigInteger, Identity(always=True))

    __table_args__ = (
        CheckConstraint(in_values("type", EventType), name="type_known"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "transaction_id"),
        Index(None, "tenant_id", "xid", "position"),
    )


class AuditEvent(Base):
    """An administrative action: who did what to which object, and why. Append-only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # The key that acted; NULL for an operator at the command line.
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index(None, "tenant_id", "id"),)


class ConsoleSession(Base):
    """A signed-in console session (api/console/sessions.py); the cookie holds the token,
    this row its hash. Read before the tenant is known only through tally_console_session."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"))
    csrf_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "api_key_id"),)
