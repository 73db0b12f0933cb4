"""Tables of wallet tokens: each tenant's Ed25519 signing keys (the private half sealed at
rest), the merchants' own issuers (their uploaded public JWKS), the tokens issued with
either (ledger/wallet_tokens.py), and the browser origins a tenant's tokens may be used
from (ledger/cors_origins.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import MONEY, NOW, UUID_DEFAULT, Base


class WalletTokenKey(Base):
    """A tenant's signing key; `id` is the `kid` of the tokens it signs. A retired key
    still verifies until `verify_until` (its last token's expiry)."""

    __tablename__ = "wallet_token_keys"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    # The raw public key, base64url (the JWK's `x`); the private key sealed by SecretBox.
    public_key: Mapped[str] = mapped_column(Text)
    private_key_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verify_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # One signing key per tenant at a time: concurrent first issues make one.
        Index(
            "uq_wallet_token_keys_current",
            "tenant_id",
            unique=True,
            postgresql_where=text("retired_at IS NULL"),
        ),
    )


class WalletTokenIssuer(Base):
    """A merchant's own issuer of wallet tokens: its `iss`, the algorithms it may sign
    with, and its public keys (a JWKS, uploaded; never fetched)."""

    __tablename__ = "wallet_token_issuers"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    iss: Mapped[str] = mapped_column(Text)
    algorithms: Mapped[list[str]] = mapped_column(ARRAY(Text))
    jwks: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    # Removed: its tokens are refused, their records kept; registered again, revived.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("tenant_id", "iss"),)


class WalletToken(Base):
    """A token issued to a wallet owner's app: what it may do, and what it has spent.

    Signed either by Tally's key (`key_id`) or by a merchant's issuer (`issuer_id`, with
    the token's own `jti`, recorded on its first verified use)."""

    __tablename__ = "wallet_tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=UUID_DEFAULT)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("wallet_token_keys.id"))
    issuer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("wallet_token_issuers.id"))
    jti: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    asset_codes: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    max_amount: Mapped[int | None] = mapped_column(MONEY)
    spend_limit: Mapped[int | None] = mapped_column(MONEY)
    spent: Mapped[int] = mapped_column(MONEY, server_default=text("0"))
    issued_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("spent >= 0", name="spent_not_negative"),
        CheckConstraint("spend_limit IS NULL OR spent <= spend_limit", name="spent_within_limit"),
        Index(None, "tenant_id", "user_id"),
        Index(None, "key_id"),
        CheckConstraint(
            "(key_id IS NULL) <> (issuer_id IS NULL) AND (issuer_id IS NULL) = (jti IS NULL)",
            name="one_signer",
        ),
        Index(
            "uq_wallet_tokens_issuer_jti",
            "tenant_id",
            "issuer_id",
            "jti",
            unique=True,
            postgresql_where=text("issuer_id IS NOT NULL"),
        ),
    )


class CorsOrigin(Base):
    """A browser origin (scheme, host, port) the tenant's wallet tokens may be used from."""

    __tablename__ = "cors_origins"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    origin: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (Index(None, "origin"),)
