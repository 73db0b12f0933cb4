"""Finding a tenant's transactions for an operator: by any id, by user, type, status,
result code and time range, newest first, in keyset pages (the console's search)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger.pagination import decode_cursor, encode_cursor, page_size
from ledger.views import iso

LIST_COLUMNS = (
    "id, seq, type, status, reference_id, user_id, to_user_id, asset_code, amount,"
    " result_code, created_at, completed_at"
)


@dataclass(frozen=True)
class TransactionFilter:
    """What to look for; every field left None matches everything."""

    # A transaction id or a reference_id, matched exactly.
    any_id: str | None = None
    # Either side: the wallet's user, or the receiver of a transfer or hold.
    user_id: str | None = None
    type: str | None = None
    status: str | None = None
    result_code: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None


def _search_cursor(created_at: datetime, seq: int) -> str:
    return encode_cursor(f"t1:{created_at.isoformat()}|{seq}")


def _search_position(position: str) -> tuple[datetime, int]:
    """Where a page continues: (created_at, seq)."""
    prefix, _, rest = position.partition(":")
    moment, _, seq = rest.partition("|")
    created_at = datetime.fromisoformat(moment)
    if prefix != "t1" or created_at.tzinfo is None:
        raise ValueError(position)
    return created_at, int(seq)


def _id_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def search_transactions(
    conn: Connection,
    tenant_id: uuid.UUID,
    wanted: TransactionFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of matching transactions, newest first, and the cursor of the next page."""
    limit = page_size(limit)
    where = ["tenant_id = :tenant_id"]
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit + 1}
    if wanted.any_id:
        as_id = _id_or_none(wanted.any_id)
        params["reference_id"] = wanted.any_id
        if as_id is not None:
            params["id"] = as_id
            where.append("(id = :id OR reference_id = :reference_id)")
        else:
            where.append("reference_id = :reference_id")
    if wanted.user_id:
        # Two index scans (ix_transactions_tenant_user, ix_transactions_tenant_to_user).
        where.append("(user_id = :user_id OR to_user_id = :user_id)")
        params["user_id"] = wanted.user_id
    for column, value in (
        ("type", wanted.type),
        ("status", wanted.status),
        ("result_code", wanted.result_code),
    ):
        if value:
            where.append(f"{column} = :{column}")
            params[column] = value
    if wanted.created_from is not None:
        where.append("created_at >= :created_from")
        params["created_from"] = wanted.created_from
    if wanted.created_until is not None:
        where.append("created_at < :created_until")
        params["created_until"] = wanted.created_until
    if cursor:
        params["after_created"], params["after_seq"] = decode_cursor(cursor, _search_position)
        # Spelled out, not `(created_at, seq) < (...)`: under row-level security only
        # leakproof quals bound the index scan, and a row comparison is not one.
        where.append(
            "created_at <= :after_created AND (created_at < :after_created OR seq < :after_seq)"
        )
    rows = (
        conn.execute(
            text(
                f"SELECT {LIST_COLUMNS} FROM transactions WHERE {' AND '.join(where)}"
                " ORDER BY created_at DESC, seq DESC LIMIT :limit"
            ),
            params,
        )
        .mappings()
        .all()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _search_cursor(rows[-1]["created_at"], rows[-1]["seq"])
    return [_listed(row) for row in rows], next_cursor


def _listed(row: RowMapping) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "type": row["type"],
        "status": row["status"],
        "reference_id": row["reference_id"],
        "user_id": row["user_id"],
        "to_user_id": row["to_user_id"],
        "asset_code": row["asset_code"],
        "amount": row["amount"],
        "result_code": row["result_code"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
    }


ENTRIES = text(
    """
    SELECT e.id, e.amount, e.balance_after, e.account_version, e.created_at,
           a.owner, a.asset_code, a.is_system
    FROM entries e JOIN accounts a ON a.id = e.account_id
    WHERE e.tenant_id = :tenant_id AND e.transaction_id = :id
    ORDER BY e.id
    """
)
EVENTS = text(
    """
    SELECT id, type, created_at FROM events
    WHERE tenant_id = :tenant_id AND transaction_id = :id ORDER BY created_at, id
    """
)
AUDIT = text(
    """
    SELECT occurred_at, actor, action, details FROM audit_events
    WHERE tenant_id = :tenant_id AND target = :target ORDER BY id
    """
)


def transaction_entries(
    conn: Connection, tenant_id: uuid.UUID, transaction_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The journal lines a transaction wrote, each with the balance it left."""
    return [
        {
            "account": "system" if row["is_system"] else row["owner"],
            "owner": row["owner"],
            "is_system": row["is_system"],
            "asset_code": row["asset_code"],
            "amount": row["amount"],
            "balance_after": row["balance_after"],
            "account_version": row["account_version"],
            "created_at": iso(row["created_at"]),
        }
        for row in conn.execute(ENTRIES, {"tenant_id": tenant_id, "id": transaction_id}).mappings()
    ]


def transaction_events(
    conn: Connection, tenant_id: uuid.UUID, transaction_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The events (webhook sources) a transaction produced, oldest first."""
    return [
        {"id": str(row["id"]), "type": row["type"], "created_at": iso(row["created_at"])}
        for row in conn.execute(EVENTS, {"tenant_id": tenant_id, "id": transaction_id}).mappings()
    ]


def audit_of(conn: Connection, tenant_id: uuid.UUID, target: str) -> list[dict[str, Any]]:
    """The audit events naming `target` (e.g. 'transaction:<id>'), oldest first."""
    return [
        dict(row)
        for row in conn.execute(AUDIT, {"tenant_id": tenant_id, "target": target}).mappings()
    ]
