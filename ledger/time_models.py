"""Tables of ledger time: the periods a tenant closed and the balance snapshots that bound
every as-of read (ledger/ledger_time.py, ledger/periods.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import NOW, UNBOUNDED_MONEY, Base


class PeriodClose(Base):
    """A tenant closed everything up to `through`; `summary` is what it held then."""

    __tablename__ = "period_closes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    through: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    actor: Mapped[str] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (UniqueConstraint("tenant_id", "through"),)


class BalanceSnapshot(Base):
    """An account's balance counting its entries effective at or before
    `effective_through` (all of them recorded by `recorded_through`): one per close, and
    checkpoints the workers write as entries accumulate (removed when a later entry lands
    at or before them), so that no as-of read walks a whole history."""

    __tablename__ = "balance_snapshots"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    effective_through: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    recorded_through: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    balance: Mapped[int] = mapped_column(UNBOUNDED_MONEY)
    entry_count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("kind IN ('close', 'checkpoint')", name="kind_known"),
        Index(None, "account_id", "effective_through"),
    )
