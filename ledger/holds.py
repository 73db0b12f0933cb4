"""Holds: their rows, how the API shows them, and the sweeper that expires them.

A hold's state lives in PostgreSQL, never only in a broker message: the sweeper finds due
holds by their `expires_at` and releases them in batches, so expiry survives the restart
of any process. Lock order, shared with the posting engine: holds first, then accounts in
ascending id order; the sweeper skips holds a batch is capturing or voiding right now.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.db import UnitOfWork
from ledger.events import write_events
from ledger.queries import version_cursor, wallet_page
from ledger.rules import HoldState
from ledger.views import transaction_view
from ledger.vocabulary import HoldStatus

LOCK_HOLDS = text(
    "SELECT * FROM holds WHERE transaction_id = ANY(:ids) ORDER BY transaction_id FOR UPDATE"
)
DUE_HOLDS = text(
    """
    SELECT transaction_id, account_id, amount FROM holds
    WHERE status = 'held' AND expires_at <= now()
    ORDER BY expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
LOCK_ACCOUNTS_BY_ID = text("SELECT id FROM accounts WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")
EXPIRE_HOLDS = text(
    """
    WITH released AS (
        UPDATE accounts a SET pending = a.pending - v.amount, version = a.version + 1,
                              updated_at = :now
        FROM (
            SELECT account_id, sum(amount) AS amount FROM holds
            WHERE transaction_id = ANY(:ids) GROUP BY account_id
        ) v
        WHERE a.id = v.account_id
    )
    UPDATE holds SET status = 'expired', released_at = :now, updated_at = :now
    WHERE transaction_id = ANY(:ids)
    RETURNING *
    """
)
HOLD_TRANSACTIONS = text("SELECT * FROM transactions WHERE id = ANY(:ids)")
# A batch's holds: the new ones inserted as the batch left them, the others updated. (One
# statement could not do both for a hold made and captured in the same batch: an UPDATE
# does not see rows its own statement's INSERT adds.)
INSERT_HOLDS = text(
    """
    INSERT INTO holds (transaction_id, tenant_id, seq, account_id, destination_account_id,
                       amount, status, expires_at, captured_amount, captured_by, voided_by,
                       released_at, created_at, updated_at)
    SELECT h.*, :now, :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tenant_ids AS uuid[]), CAST(:seqs AS bigint[]),
                CAST(:account_ids AS bigint[]), CAST(:destination_ids AS bigint[]),
                CAST(:amounts AS numeric[]), CAST(:statuses AS text[]),
                CAST(:expires_ats AS timestamptz[]), CAST(:captured_amounts AS numeric[]),
                CAST(:captured_bys AS uuid[]), CAST(:voided_bys AS uuid[]),
                CAST(:released_ats AS timestamptz[])) AS h
    """
)
UPDATE_HOLDS = text(
    """
    UPDATE holds h
    SET status = v.status, captured_amount = v.captured_amount, captured_by = v.captured_by,
        voided_by = v.voided_by, released_at = v.released_at, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
                CAST(:captured_amounts AS numeric[]), CAST(:captured_bys AS uuid[]),
                CAST(:voided_bys AS uuid[]), CAST(:released_ats AS timestamptz[]))
      AS v(id, status, captured_amount, captured_by, voided_by, released_at)
    WHERE h.transaction_id = v.id
    """
)


def write_holds(conn: Connection, now: datetime, holds: Sequence[HoldState]) -> None:
    """Within a posting batch: store the holds it made and the ones it captured or voided."""
    new = [hold for hold in holds if hold.is_new]
    if new:
        conn.execute(
            INSERT_HOLDS,
            {
                "now": now,
                "ids": [h.transaction_id for h in new],
                "tenant_ids": [h.tenant_id for h in new],
                "seqs": [h.seq for h in new],
                "account_ids": [h.account_id for h in new],
                "destination_ids": [h.destination_account_id for h in new],
                "amounts": [h.amount for h in new],
                "expires_ats": [h.expires_at for h in new],
                **_outcomes(new),
            },
        )
    changed = [hold for hold in holds if not hold.is_new]
    if changed:
        conn.execute(
            UPDATE_HOLDS,
            {"now": now, "ids": [h.transaction_id for h in changed], **_outcomes(changed)},
        )


def _outcomes(holds: Sequence[HoldState]) -> dict[str, list[Any]]:
    return {
        "statuses": [str(h.status) for h in holds],
        "captured_amounts": [h.captured_amount for h in holds],
        "captured_bys": [h.captured_by for h in holds],
        "voided_bys": [h.voided_by for h in holds],
        "released_ats": [h.released_at for h in holds],
    }


def expire_due_holds(work: UnitOfWork, limit: int = 500) -> int:
    """Release up to `limit` holds past their expiry, with a `hold.expired` event for each;
    how many were expired."""
    conn = work.connection
    due = conn.execute(DUE_HOLDS, {"limit": limit}).mappings().all()
    if not due:
        return 0
    now = conn.execute(text("SELECT now()")).scalar_one()
    conn.execute(LOCK_ACCOUNTS_BY_ID, {"ids": sorted({row["account_id"] for row in due})})
    ids = [row["transaction_id"] for row in due]
    expired = conn.execute(EXPIRE_HOLDS, {"ids": ids, "now": now}).mappings().all()
    write_hold_events(conn, now, [(HoldStatus.EXPIRED, hold) for hold in expired])
    return len(expired)


def write_hold_events(
    conn: Connection, now: datetime, changes: Sequence[tuple[HoldStatus, Mapping[Any, Any]]]
) -> None:
    """One `hold.<status>` event per changed hold, its payload the hold's transaction."""
    if not changes:
        return
    rows = {
        row["id"]: row
        for row in conn.execute(
            HOLD_TRANSACTIONS, {"ids": [hold["transaction_id"] for _, hold in changes]}
        ).mappings()
    }
    write_events(
        conn,
        now,
        [
            (
                hold["tenant_id"],
                f"hold.{status}",
                hold["transaction_id"],
                transaction_view(rows[hold["transaction_id"]], {}, hold),
            )
            for status, hold in changes
        ],
    )


def list_holds(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A wallet's holds, newest first, in keyset pages of at most `limit`."""
    limit, before, account_id = wallet_page(conn, tenant_id, user_id, asset_code, limit, cursor)
    rows = (
        conn.execute(
            text(
                """
                SELECT t.*, h.seq AS hold_seq, h.status AS hold_status,
                       h.amount AS hold_amount, h.captured_amount AS hold_captured_amount,
                       h.expires_at AS hold_expires_at, h.captured_by AS hold_captured_by,
                       h.voided_by AS hold_voided_by
                FROM holds h JOIN transactions t ON t.id = h.transaction_id
                WHERE h.account_id = :account_id
                  AND (CAST(:status AS text) IS NULL OR h.status = :status)
                  AND (CAST(:before AS bigint) IS NULL OR h.seq < :before)
                ORDER BY h.seq DESC
                LIMIT :limit
                """
            ),
            {"account_id": account_id, "status": status, "before": before, "limit": limit + 1},
        )
        .mappings()
        .all()
    )
    page = rows[:limit]
    items = [
        transaction_view(
            row, {}, {k.removeprefix("hold_"): v for k, v in row.items() if k.startswith("hold_")}
        )
        for row in page
    ]
    next_cursor = version_cursor(page[-1]["hold_seq"]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}
