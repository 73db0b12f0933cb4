"""Balances as of a moment: what accounts held counting the entries effective at or before
`as_of`, and, with `known_at`, only those Tally had recorded by then ("what we knew at K
about T").

Every read starts from the latest balance snapshot at or before `as_of` (a close, or a
checkpoint the posting batches keep, ledger/checkpoints.py) that was recorded by `known_at`,
and adds the entries effective after it up to `as_of`: a range of the
`(account_id, effective_at)` index, never a whole history. A snapshot covers every entry
effective at or before it (later-recorded ones remove checkpoints they land before), so
base plus range is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, text

# Where the entries after the base snapshot start: '-infinity' without one. A CASE, not
# coalesce(): under row-level security PostgreSQL bounds an index scan only by quals it
# knows cannot leak rows (leakproof), and it counts CASE among those but not COALESCE. With
# coalesce() the API role's as-of read walked the account's whole history (350 ms at a
# million entries) instead of a range of the `(account_id, effective_at)` index.
AFTER_BASE = (
    "CASE WHEN base.effective_through IS NULL THEN '-infinity' ELSE base.effective_through END"
)

# The one as-of computation, joined to a set of accounts `a` (by ids here; by tenant for
# closes and reports, ledger/periods.py, ledger/reports.py): AS_OF_BALANCE and
# AS_OF_ENTRY_COUNT read `base` (the latest snapshot) and `moved` (the entries since).
AS_OF_JOIN = f"""
    LEFT JOIN LATERAL (
        SELECT s.effective_through, s.balance, s.entry_count FROM balance_snapshots s
        WHERE s.account_id = a.id AND s.effective_through <= :as_of
          AND (CAST(:known_at AS timestamptz) IS NULL OR s.recorded_through <= :known_at)
        ORDER BY s.effective_through DESC LIMIT 1
    ) base ON true
    CROSS JOIN LATERAL (
        SELECT sum(e.amount) AS total, count(*) AS entries FROM entries e
        WHERE e.account_id = a.id AND e.effective_at <= :as_of
          AND e.effective_at > {AFTER_BASE}
          AND (CAST(:known_at AS timestamptz) IS NULL OR e.created_at <= :known_at)
    ) moved
"""
AS_OF_BALANCE = "coalesce(base.balance, 0) + coalesce(moved.total, 0)"
AS_OF_ENTRY_COUNT = "coalesce(base.entry_count, 0) + moved.entries"

BALANCES_AS_OF = text(
    f"""
    SELECT a.id, {AS_OF_BALANCE} AS balance
    FROM unnest(CAST(:ids AS bigint[])) AS a(id)
    {AS_OF_JOIN}
    """
)


def balances_as_of(
    conn: Connection,
    account_ids: Sequence[int],
    as_of: datetime,
    known_at: datetime | None = None,
) -> dict[int, int]:
    """account id -> its balance as of `as_of` (known at `known_at`, if given)."""
    if not account_ids:
        return {}
    rows = conn.execute(
        BALANCES_AS_OF, {"ids": list(account_ids), "as_of": as_of, "known_at": known_at}
    )
    return {account_id: int(balance) for account_id, balance in rows}


def balance_as_of(
    conn: Connection, account_id: int, as_of: datetime, known_at: datetime | None = None
) -> int:
    """One account's balance as of `as_of` (known at `known_at`, if given)."""
    return balances_as_of(conn, [account_id], as_of, known_at)[account_id]


# `(effective_at, id) <= (:at, :entry_id)` spelled out: a row comparison is not leakproof
# either (see AFTER_BASE), and would not bound the index scan under row-level security.
BALANCE_THROUGH = text(
    f"""
    SELECT coalesce(base.balance, 0) + coalesce(moved.total, 0)
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT s.effective_through, s.balance FROM balance_snapshots s
        WHERE s.account_id = :id AND s.effective_through < :at
          AND (CAST(:known_at AS timestamptz) IS NULL OR s.recorded_through <= :known_at)
        ORDER BY s.effective_through DESC LIMIT 1
    ) base ON true
    CROSS JOIN LATERAL (
        SELECT sum(e.amount) AS total FROM entries e
        WHERE e.account_id = :id AND e.effective_at <= :at
          AND (e.effective_at < :at OR e.id <= :entry_id)
          AND e.effective_at > {AFTER_BASE}
          AND (CAST(:known_at AS timestamptz) IS NULL OR e.created_at <= :known_at)
    ) moved
    """
)


def balance_through(
    conn: Connection,
    account_id: int,
    at: datetime,
    entry_id: int,
    known_at: datetime | None = None,
) -> int:
    """One account's balance up to and including the entry `entry_id` effective at `at`, in
    effective order (effective_at, then entry id): the running balance a statement shows
    after that entry. Only a snapshot strictly before `at` is a base: one at `at` may
    already count entries of that moment ordered after `entry_id`."""
    params = {"id": account_id, "at": at, "entry_id": entry_id, "known_at": known_at}
    return int(conn.execute(BALANCE_THROUGH, params).scalar_one())
