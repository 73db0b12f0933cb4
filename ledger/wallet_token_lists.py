"""Listing a wallet's wallet tokens (ledger/wallet_tokens.py issues and revokes them): the
live ones, neither expired nor revoked, for the operator console's wallet page."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

# Newest first; `now()` is the transaction's clock, the one revocation stamps.
LIVE_TOKENS = text(
    """
    SELECT id, scopes, asset_codes, max_amount, spend_limit, spent, created_at, expires_at
    FROM wallet_tokens
    WHERE tenant_id = :tenant_id AND user_id = :user_id
      AND revoked_at IS NULL AND expires_at > now()
    ORDER BY created_at DESC, id
    LIMIT :limit
    """
)
DEFAULT_LIMIT = 100


def live_wallet_tokens(
    conn: Connection, tenant_id: uuid.UUID, user_id: str, *, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """The user's tokens that still authenticate (not expired, not revoked), newest first,
    at most `limit`: id, scopes, asset codes (None: any), max amount, spend limit, spent,
    issued at, expires at."""
    rows = conn.execute(LIVE_TOKENS, {"tenant_id": tenant_id, "user_id": user_id, "limit": limit})
    return [
        {
            "id": str(row.id),
            "scopes": list(row.scopes),
            "asset_codes": list(row.asset_codes) if row.asset_codes is not None else None,
            "max_amount": row.max_amount,
            "spend_limit": row.spend_limit,
            "spent": row.spent,
            "issued_at": row.created_at,
            "expires_at": row.expires_at,
        }
        for row in rows
    ]
