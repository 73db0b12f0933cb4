"""Recording submissions durably and idempotently, before any worker sees them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from ledger.errors import AssetNotFound, IdempotencyKeyReused
from ledger.queries import balances_after, transaction_row
from ledger.requests import TransactionRequest
from ledger.views import transaction_view

INSERT_TRANSACTION = text(
    """
    INSERT INTO transactions (
        tenant_id, type, reference_id, request_hash, asset_code, amount, user_id,
        to_user_id, original_transaction_id, payment_method, bonus_type, item_id, reason, metadata
    ) VALUES (
        :tenant_id, :type, :reference_id, :request_hash, :asset_code, :amount, :user_id,
        :to_user_id, :original_transaction_id, :payment_method, :bonus_type, :item_id, :reason,
        CAST(:metadata AS jsonb)
    )
    ON CONFLICT (tenant_id, reference_id) DO NOTHING
    RETURNING *
    """
)

# Sorted multi-row insert: concurrent intakes take the unique-index locks in the same order.
ENSURE_WALLETS = text(
    """
    INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
    SELECT :tenant_id, k.asset_code, k.owner, false
    FROM unnest(CAST(:asset_codes AS text[]), CAST(:owners AS text[])) AS k(asset_code, owner)
    ORDER BY k.asset_code, k.owner
    ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING
    """
)


@dataclass(frozen=True)
class Submission:
    """The recorded transaction, and whether it was recorded by an earlier, identical request."""

    transaction: dict[str, Any]
    replayed: bool

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.transaction["id"])


def _params(tenant_id: uuid.UUID, request: TransactionRequest) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "type": request.type,
        "reference_id": request.reference_id,
        "request_hash": request.fingerprint(),
        "asset_code": request.asset_code,
        "amount": request.amount,
        "user_id": request.user_id,
        "to_user_id": request.to_user_id,
        "original_transaction_id": request.original_transaction_id,
        "payment_method": request.payment_method,
        "bonus_type": request.bonus_type,
        "item_id": request.item_id,
        "reason": request.reason,
        "metadata": json.dumps(request.metadata),
    }


def ensure_wallets(
    conn: Connection, tenant_id: uuid.UUID, wallets: Sequence[tuple[str, str]]
) -> None:
    """Create the (asset_code, owner) wallets that do not exist yet."""
    if not wallets:
        return
    keys = sorted(set(wallets))
    conn.execute(
        ENSURE_WALLETS,
        {
            "tenant_id": tenant_id,
            "asset_codes": [asset for asset, _ in keys],
            "owners": [owner for _, owner in keys],
        },
    )


def submit_transaction(
    conn: Connection, tenant_id: uuid.UUID, request: TransactionRequest
) -> Submission:
    """Record a validated request as `queued`, or return the transaction its reference made."""
    params = _params(tenant_id, request)
    try:
        row = conn.execute(INSERT_TRANSACTION, params).mappings().first()
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.ForeignKeyViolation):
            raise AssetNotFound(
                f"asset {request.asset_code} does not exist", field="asset_code"
            ) from None
        raise
    if row is not None:
        ensure_wallets(
            conn, tenant_id, [(request.asset_code, owner) for owner in request.credited_wallets()]
        )
        return Submission(transaction_view(row, {}), replayed=False)

    existing = transaction_row(conn, tenant_id, reference_id=request.reference_id)
    if existing is None:  # pragma: no cover - the conflicting row was committed before us
        raise RuntimeError("idempotency conflict without a committed row")
    if existing["request_hash"] != params["request_hash"]:
        raise IdempotencyKeyReused(
            f"reference_id {request.reference_id!r} was used for a different request",
            field="reference_id",
        )
    return Submission(
        transaction_view(existing, balances_after(conn, existing["id"])), replayed=True
    )
