"""The webhook tables: endpoints, the deliveries of events to them, and each attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import NOW, UUID_DEFAULT, Base, in_values
from ledger.vocabulary import WEBHOOK_TEST_EVENT, DeliveryStatus, EventType


class WebhookEndpoint(Base):
    """A tenant's URL that receives signed event callbacks."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # HMAC needs the secret itself, so it cannot be hashed: it is sealed with Fernet under
    # keys kept outside the database (ledger/webhooks/secrets.py); these columns hold only
    # the sealed tokens, never a whsec_ secret.
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # Deleting only marks the row: the outbox's fan-out may be inserting a delivery for it
    # at that moment, and a vanished foreign key would fail a ledger batch.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("length(url) BETWEEN 1 AND 2048", name="url_length"),
        CheckConstraint(
            "description IS NULL OR length(description) <= 500", name="description_length"
        ),
        CheckConstraint(
            "cardinality(event_types) >= 1 AND event_types <@ ARRAY["
            + ", ".join(repr(str(t)) for t in EventType)
            + "]::text[]",
            name="event_types_known",
        ),
        CheckConstraint(
            "starts_with(secret_sealed, 'gAAAAA') AND (previous_secret_sealed IS NULL"
            " OR starts_with(previous_secret_sealed, 'gAAAAA'))",
            name="secrets_sealed",
        ),
        CheckConstraint(
            "(previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL)",
            name="previous_secret_expiry",
        ),
        CheckConstraint("enabled = (disabled_reason IS NULL)", name="reason_when_disabled"),
        CheckConstraint("deleted_at IS NULL OR NOT enabled", name="deleted_is_disabled"),
        Index(None, "tenant_id"),
    )


class WebhookDelivery(Base):
    """One event on its way to one endpoint: its schedule, its lease and its outcome."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    event_type: Mapped[str] = mapped_column(Text)
    # Test events have no outbox row: they carry their own data.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        # At most one delivery of an event per endpoint; redeliveries reuse it.
        UniqueConstraint("endpoint_id", "event_id"),
        CheckConstraint(in_values("status", DeliveryStatus), name="status_known"),
        CheckConstraint(
            in_values("event_type", (*EventType, WEBHOOK_TEST_EVENT)), name="event_type_known"
        ),
        CheckConstraint("(event_id IS NULL) = (payload IS NOT NULL)", name="payload_or_event"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint(
            "(status = 'delivered') = (delivered_at IS NOT NULL)", name="delivered_when_done"
        ),
        # The dispatcher's scan reads only deliveries still under way.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
        ),
        Index(None, "endpoint_id", "created_at"),
        # For the console: an endpoint's backlog and failures, a transaction's deliveries.
        Index(None, "endpoint_id", "status"),
        Index(None, "event_id", postgresql_where=text("event_id IS NOT NULL")),
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, as the receiver answered it (or failed to)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("latency_ms >= 0", name="latency_non_negative"),
        CheckConstraint("status_code IS NOT NULL OR error IS NOT NULL", name="answer_or_error"),
        Index(None, "delivery_id"),
    )
