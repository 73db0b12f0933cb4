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

from ledger.errors import AssetNotFound, IdempotencyKeyReused, InvalidRequest, LedgerError
from ledger.queries import balances_after, transaction_row
from ledger.transaction_request import MAX_METADATA_BYTES, TransactionRequest
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
    conn: Connection,
    tenant_id: uuid.UUID,
    request: TransactionRequest,
    *,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> Submission:
    """Record a request as `queued`, or return the transaction its reference made.

    The ledger validates the request itself: no caller can record an amount out of bounds.
    """
    request = request.validated(max_metadata_bytes)
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


# Set-based intake of many requests: one statement, positions kept so `seq` (the order of
# application) follows the order of the batch.
INSERT_TRANSACTIONS = text(
    """
    INSERT INTO transactions (
        tenant_id, type, reference_id, request_hash, asset_code, amount, user_id,
        to_user_id, original_transaction_id, payment_method, bonus_type, item_id, reason, metadata
    )
    SELECT :tenant_id, r.type, r.reference_id, r.request_hash, r.asset_code, r.amount, r.user_id,
           r.to_user_id, r.original_transaction_id, r.payment_method, r.bonus_type, r.item_id,
           r.reason, r.metadata
    FROM unnest(
        CAST(:types AS text[]), CAST(:reference_ids AS text[]), CAST(:request_hashes AS text[]),
        CAST(:asset_codes AS text[]), CAST(:amounts AS bigint[]), CAST(:user_ids AS text[]),
        CAST(:to_user_ids AS text[]), CAST(:original_transaction_ids AS uuid[]),
        CAST(:payment_methods AS text[]), CAST(:bonus_types AS text[]),
        CAST(:item_ids AS text[]), CAST(:reasons AS text[]), CAST(:metadata AS jsonb[])
    ) WITH ORDINALITY AS r(
        type, reference_id, request_hash, asset_code, amount, user_id, to_user_id,
        original_transaction_id, payment_method, bonus_type, item_id, reason, metadata, position
    )
    ORDER BY r.position
    ON CONFLICT (tenant_id, reference_id) DO NOTHING
    RETURNING *
    """
)
EXISTING_ASSETS = text(
    "SELECT code FROM assets WHERE tenant_id = :tenant_id AND code = ANY(:codes)"
)
EXISTING_BY_REFERENCE = text(
    "SELECT * FROM transactions WHERE tenant_id = :tenant_id AND reference_id = ANY(:references)"
)
BALANCES_AFTER_MANY = text(
    """
    SELECT e.transaction_id, a.owner, e.balance_after
    FROM entries e JOIN accounts a ON a.id = e.account_id
    WHERE e.transaction_id = ANY(:ids) AND NOT a.is_system
    """
)

# The columns of INSERT_TRANSACTIONS, in its order, as `_params` names them.
_BATCH_COLUMNS = {
    "types": "type",
    "reference_ids": "reference_id",
    "request_hashes": "request_hash",
    "asset_codes": "asset_code",
    "amounts": "amount",
    "user_ids": "user_id",
    "to_user_ids": "to_user_id",
    "original_transaction_ids": "original_transaction_id",
    "payment_methods": "payment_method",
    "bonus_types": "bonus_type",
    "item_ids": "item_id",
    "reasons": "reason",
    "metadata": "metadata",
}


def _replay(
    row: Any, request_hash: str, reference_id: str, after: dict[str, int]
) -> Submission | LedgerError:
    if row["request_hash"] != request_hash:
        return IdempotencyKeyReused(
            f"reference_id {reference_id!r} was used for a different request",
            field="reference_id",
        )
    return Submission(transaction_view(row, after), replayed=True)


def submit_transactions(
    conn: Connection,
    tenant_id: uuid.UUID,
    requests: Sequence[TransactionRequest],
    *,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> list[Submission | LedgerError]:
    """Record many requests in the caller's transaction, each on its own terms.

    One result per request, in order: a new or replayed Submission, or the LedgerError
    (invalid request, unknown asset, reference id reused for another body) that request
    alone ran into. A reference id repeated inside the batch is recorded once; later
    copies are replays. As `submit_transaction`, the ledger validates every request itself.
    """
    invalid: dict[int, LedgerError] = {}
    checked: list[TransactionRequest] = []
    for index, request in enumerate(requests):
        try:
            checked.append(request.validated(max_metadata_bytes))
        except InvalidRequest as error:
            invalid[index] = error
            checked.append(request)
    requests = checked
    params = {i: _params(tenant_id, r) for i, r in enumerate(requests) if i not in invalid}
    codes = sorted({r.asset_code for i, r in enumerate(requests) if i not in invalid})
    known = set(conn.execute(EXISTING_ASSETS, {"tenant_id": tenant_id, "codes": codes}).scalars())
    for index, request in enumerate(requests):
        if index not in invalid and request.asset_code not in known:
            invalid[index] = AssetNotFound(
                f"asset {request.asset_code} does not exist", field="asset_code"
            )
    first_of: dict[str, int] = {}
    for index, request in enumerate(requests):
        if index not in invalid:
            first_of.setdefault(request.reference_id, index)
    fresh = sorted(first_of.values())
    inserted: dict[str, Any] = {}
    if fresh:
        columns = {
            name: [params[i][column] for i in fresh] for name, column in _BATCH_COLUMNS.items()
        }
        for row in conn.execute(
            INSERT_TRANSACTIONS, {"tenant_id": tenant_id, **columns}
        ).mappings():
            inserted[row["reference_id"]] = row
        ensure_wallets(
            conn,
            tenant_id,
            [
                (requests[i].asset_code, owner)
                for i in fresh
                if requests[i].reference_id in inserted
                for owner in requests[i].credited_wallets()
            ],
        )
    existing: dict[str, Any] = {}
    conflicted = [ref for ref in first_of if ref not in inserted]
    after: dict[uuid.UUID, dict[str, int]] = {}
    if conflicted:
        rows = conn.execute(
            EXISTING_BY_REFERENCE, {"tenant_id": tenant_id, "references": conflicted}
        ).mappings()
        existing = {row["reference_id"]: row for row in rows}
        applied = [row["id"] for row in existing.values() if row["status"] == "applied"]
        if applied:
            for transaction_id, owner, balance in conn.execute(
                BALANCES_AFTER_MANY, {"ids": applied}
            ):
                after.setdefault(transaction_id, {})[owner] = balance

    results: list[Submission | LedgerError] = []
    for index, request in enumerate(requests):
        reference = request.reference_id
        if index in invalid:
            results.append(invalid[index])
            continue
        param = params[index]
        if reference in inserted:
            row = inserted[reference]
            if first_of[reference] == index:
                results.append(Submission(transaction_view(row, {}), replayed=False))
            else:
                results.append(_replay(row, param["request_hash"], reference, {}))
        elif reference in existing:
            row = existing[reference]
            results.append(_replay(row, param["request_hash"], reference, after.get(row["id"], {})))
        else:  # pragma: no cover - the conflicting row was committed before we looked
            raise RuntimeError("idempotency conflict without a committed row")
    return results
