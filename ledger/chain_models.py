"""The seals table (ledger/seals.py): a tenant's Merkle root over its accounts' chain
heads, as of the last entry it covers. Append-only."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, LargeBinary
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import NOW, Base


class Seal(Base):
    """The root over every chained account's head of a tenant, through `entries_through`."""

    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("tenants.id"))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # The highest entry id of the tenant the seal covers.
    entries_through: Mapped[int] = mapped_column(BigInteger)
    account_count: Mapped[int] = mapped_column(Integer)
    root: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_seals_tenant_id_id", "tenant_id", "id"),)
