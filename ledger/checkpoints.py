"""Checkpoints: the balance snapshots a posting batch keeps so that no as-of read walks a
whole history.

Each time an account's version passes a multiple of CHECKPOINT_EVERY, the batch that moved
it records the account's balance counting its entries effective at or before the batch's
time: the latest snapshot before that time, plus the entries since (a bounded range of the
`(account_id, effective_at)` index). A snapshot covers every entry effective at or before it:
a batch that writes an entry effective earlier (a backdated submission) removes the
account's checkpoints from that time on, in the same commit, so a snapshot is never stale.
Snapshots of closed periods (ledger/periods.py) are never removed: nothing lands in a
closed period. Both run under the account's row lock, taken by the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.ledger_time import AFTER_BASE

# Versions between checkpoints: an as-of read sums at most about this many entries, beside
# those of the last moments and of backdated submissions since the last checkpoint.
CHECKPOINT_EVERY = 1000

WRITE_CHECKPOINTS = text(
    f"""
    INSERT INTO balance_snapshots (account_id, tenant_id, kind, effective_through,
                                   recorded_through, balance, entry_count)
    SELECT a.id, a.tenant_id, 'checkpoint', :now, :now,
           coalesce(base.balance, 0) + coalesce(moved.total, 0),
           coalesce(base.entry_count, 0) + moved.entries
    FROM accounts a
    LEFT JOIN LATERAL (
        SELECT s.effective_through, s.balance, s.entry_count FROM balance_snapshots s
        WHERE s.account_id = a.id AND s.effective_through <= :now
        ORDER BY s.effective_through DESC LIMIT 1
    ) base ON true
    CROSS JOIN LATERAL (
        SELECT sum(e.amount) AS total, count(*) AS entries FROM entries e
        WHERE e.account_id = a.id AND e.effective_at <= :now
          AND e.effective_at > {AFTER_BASE}
    ) moved
    WHERE a.id = ANY(:ids)
    ON CONFLICT DO NOTHING
    """
)
DROP_STALE_CHECKPOINTS = text(
    """
    DELETE FROM balance_snapshots s
    USING unnest(CAST(:account_ids AS bigint[]), CAST(:effective_ats AS timestamptz[]))
      AS b(account_id, effective_at)
    WHERE s.account_id = b.account_id AND s.kind = 'checkpoint'
      AND s.effective_through >= b.effective_at
    """
)


def keep_checkpoints(
    conn: Connection,
    now: datetime,
    entry_rows: Sequence[tuple[uuid.UUID, uuid.UUID, int, int, int, int, datetime | None]],
    touched: Sequence[Any],
    versions_before: dict[int, int],
) -> None:
    """After a batch's entries are written: drop the checkpoints its backdated entries
    land before, then checkpoint the accounts whose version passed a multiple of
    CHECKPOINT_EVERY."""
    backdated: dict[int, datetime] = {}
    for *_, account_id, _, _, _, effective_at in entry_rows:
        if effective_at is not None and effective_at <= now:
            backdated[account_id] = min(effective_at, backdated.get(account_id, effective_at))
    if backdated:
        conn.execute(
            DROP_STALE_CHECKPOINTS,
            {"account_ids": list(backdated), "effective_ats": list(backdated.values())},
        )
    due = [
        account.id
        for account in touched
        if account.version // CHECKPOINT_EVERY
        > versions_before.get(account.id, account.version) // CHECKPOINT_EVERY
    ]
    if due:
        conn.execute(WRITE_CHECKPOINTS, {"now": now, "ids": sorted(due)})
