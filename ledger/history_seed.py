"""A wallet's long history written straight in SQL: used by `tally bench --pattern
ledger-time` only (docs/performance.md#running-the-bench), never by the product.

Submitting a million top-ups through the API would take hours; this writes what the posting
engine would have left behind, set-based, in a few statements: one applied `topup`
transaction per movement, its two entries (the wallet and `@topup`) with exact running
`balance_after` and `account_version`, both accounts' balance and version, and a checkpoint
every CHECKPOINT_EVERY versions. Movements are recorded over the last `days` days, in order;
a share of them is backdated (effective before it was recorded, by up to `max_backdate`),
as backdated submissions are.

A checkpoint sits where the engine would write it, at the recording time of each
CHECKPOINT_EVERY-th version, but is computed after every insert, as a recomputation would:
the sum and count of the entries effective at or before it, recorded through the latest of
their recording times. So a later-recorded entry is never missing from a checkpoint it lands
before, and an as-of read known at an earlier moment skips the checkpoint, as it must.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from ledger.checkpoints import CHECKPOINT_EVERY
from ledger.intake import ensure_wallets
from ledger.vocabulary import SystemAccount

HISTORY_DAYS = 30
BACKDATED_SHARE = 0.05
MAX_BACKDATE = timedelta(hours=48)
# Top-ups of 0.01 to 100.00 in a 2-decimal asset.
MAX_TOPUP = 10_000
REQUEST_HASH = "history-seed"

LOCK_ACCOUNTS = text(
    """
    SELECT owner, id, version FROM accounts
    WHERE tenant_id = :t AND asset_code = :asset AND owner IN (:user, :topup)
    ORDER BY id FOR UPDATE
    """
)
# Recording times are one per slot of the history, so versions follow them; a backdated
# movement counts from a moment before it was recorded, never before the history starts.
MAKE_MOVEMENTS = text(
    """
    CREATE TEMP TABLE history_movements ON COMMIT DROP AS
    SELECT m.n, gen_random_uuid() AS id, m.amount, m.recorded_at,
           CASE WHEN m.backdated THEN m.recorded_at
                - random() * least(CAST(:max_backdate AS interval), m.recorded_at - m.since)
           END AS backdated_to,
           sum(m.amount) OVER (ORDER BY m.n) AS balance_after
    FROM (
        SELECT n, 1 + floor(random() * :max_topup)::bigint AS amount,
               now() - CAST(:span AS interval) AS since,
               now() - CAST(:span AS interval) * (1 - (n - random()) / :count) AS recorded_at,
               random() < :backdated_share AS backdated
        FROM generate_series(1, :count) AS n
    ) m
    """
)
WRITE_TRANSACTIONS = text(
    """
    INSERT INTO transactions (id, tenant_id, type, reference_id, request_hash, status,
                              asset_code, amount, user_id, payment_method, effective_at,
                              attempts, next_attempt_at, created_at, updated_at, completed_at)
    SELECT m.id, :t, 'topup', CAST(:prefix AS text) || m.n, :hash, 'applied', :asset,
           m.amount, :user, 'bench', m.backdated_to, 1, m.recorded_at - interval '5 milliseconds',
           m.recorded_at - interval '5 milliseconds', m.recorded_at, m.recorded_at
    FROM history_movements m ORDER BY m.n
    """
)
WRITE_ENTRIES = text(
    """
    INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                         account_version, created_at, effective_at)
    SELECT :t, m.id, side.account_id, side.sign * m.amount, side.sign * m.balance_after,
           m.n, m.recorded_at, coalesce(m.backdated_to, m.recorded_at)
    FROM history_movements m
    CROSS JOIN (VALUES (CAST(:wallet AS bigint), 1), (CAST(:topup AS bigint), -1))
      AS side(account_id, sign)
    ORDER BY m.n, side.sign DESC
    """
)
# Running totals in effective order; the default RANGE frame counts movements effective at
# the same moment together, as "effective at or before" does.
MAKE_RUNNING_TOTALS = (
    text(
        """
        CREATE TEMP TABLE history_running ON COMMIT DROP AS
        SELECT effective_at,
               sum(amount) OVER w AS balance, count(*) OVER w AS entry_count,
               max(recorded_at) OVER w AS recorded_through
        FROM (SELECT amount, recorded_at, coalesce(backdated_to, recorded_at) AS effective_at
              FROM history_movements) m
        WINDOW w AS (ORDER BY effective_at)
        """
    ),
    text("CREATE INDEX ON history_running (effective_at)"),
    text("ANALYZE history_running"),
)
WRITE_CHECKPOINTS = text(
    """
    INSERT INTO balance_snapshots (account_id, tenant_id, kind, effective_through,
                                   recorded_through, balance, entry_count)
    SELECT side.account_id, :t, 'checkpoint', m.recorded_at, r.recorded_through,
           side.sign * r.balance, r.entry_count
    FROM history_movements m
    CROSS JOIN LATERAL (
        SELECT balance, entry_count, recorded_through FROM history_running
        WHERE effective_at <= m.recorded_at ORDER BY effective_at DESC LIMIT 1
    ) r
    CROSS JOIN (VALUES (CAST(:wallet AS bigint), 1), (CAST(:topup AS bigint), -1))
      AS side(account_id, sign)
    WHERE m.n % :every = 0
    """
)
MOVE_ACCOUNTS = text(
    """
    UPDATE accounts a
    SET balance = side.sign * last.balance_after, version = last.n, updated_at = last.recorded_at
    FROM (SELECT n, balance_after, recorded_at FROM history_movements
          ORDER BY n DESC LIMIT 1) last
    CROSS JOIN (VALUES (CAST(:wallet AS bigint), 1), (CAST(:topup AS bigint), -1))
      AS side(account_id, sign)
    WHERE a.id = side.account_id
    RETURNING a.id, a.balance
    """
)
COUNT_BACKDATED = text("SELECT count(backdated_to) FROM history_movements")
ANALYZE_LEDGER = text("ANALYZE transactions, entries, accounts, balance_snapshots")
ENTRIES_AT_POSITIONS = text(
    """
    SELECT position, effective_at FROM (
        SELECT effective_at, row_number() OVER (ORDER BY effective_at, id) AS position
        FROM entries WHERE account_id = :account
    ) e
    WHERE position = ANY(CAST(:positions AS bigint[]))
    """
)


@dataclass(frozen=True)
class SeededHistory:
    """What `seed_wallet_history` wrote: the two accounts, how many movements (each one
    entry on either account), how many were backdated, the wallet's final balance and the
    checkpoints of each account."""

    wallet_id: int
    topup_id: int
    movements: int
    backdated: int
    balance: int
    checkpoints: int


def seed_wallet_history(
    conn: Connection,
    tenant_id: uuid.UUID,
    asset_code: str,
    user_id: str,
    movements: int,
    *,
    days: int = HISTORY_DAYS,
    backdated_share: float = BACKDATED_SHARE,
    max_backdate: timedelta = MAX_BACKDATE,
    reference_prefix: str = "history-",
) -> SeededHistory:
    """Write `movements` applied top-ups of a new wallet (and a tenant's `@topup` that has
    never moved) recorded over the last `days` days, in the caller's transaction."""
    if movements < 1:
        raise ValueError("movements must be >= 1")
    # A million rows per statement: far beyond the engine's statement timeout, and the
    # bench's seeding alone runs on the database.
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    ensure_wallets(conn, tenant_id, [(asset_code, user_id)])
    topup = str(SystemAccount.TOPUP)
    owners = {"t": tenant_id, "asset": asset_code, "user": user_id, "topup": topup}
    locked = conn.execute(LOCK_ACCOUNTS, owners)
    accounts = {owner: (account_id, version) for owner, account_id, version in locked}
    wallet_id, wallet_version = accounts[user_id]
    topup_id, topup_version = accounts[topup]
    if wallet_version or topup_version:
        raise ValueError(f"{user_id} and {topup} must not have moved before")
    conn.execute(
        MAKE_MOVEMENTS,
        {
            "count": movements,
            "span": timedelta(days=days),
            "max_backdate": max_backdate,
            "max_topup": MAX_TOPUP,
            "backdated_share": backdated_share,
        },
    )
    sides = {"t": tenant_id, "wallet": wallet_id, "topup": topup_id}
    conn.execute(
        WRITE_TRANSACTIONS,
        {**owners, "prefix": reference_prefix, "hash": REQUEST_HASH},
    )
    conn.execute(WRITE_ENTRIES, sides)
    for statement in MAKE_RUNNING_TOTALS:
        conn.execute(statement)
    checkpoints = conn.execute(WRITE_CHECKPOINTS, {**sides, "every": CHECKPOINT_EVERY}).rowcount
    balances = {row[0]: row[1] for row in conn.execute(MOVE_ACCOUNTS, sides)}
    backdated = conn.execute(COUNT_BACKDATED).scalar_one()
    return SeededHistory(
        wallet_id=wallet_id,
        topup_id=topup_id,
        movements=movements,
        backdated=int(backdated),
        balance=int(balances[wallet_id]),
        checkpoints=checkpoints // 2,
    )


def refresh_statistics(conn: Connection) -> None:
    """Let the planner see the seeded rows now rather than at autovacuum's next pass."""
    conn.execute(ANALYZE_LEDGER)


def effective_times_at(
    conn: Connection, account_id: int, positions: Sequence[int]
) -> dict[int, datetime]:
    """The effective times of an account's entries at these 1-based positions in effective
    order (ties by entry id)."""
    rows = conn.execute(ENTRIES_AT_POSITIONS, {"account": account_id, "positions": positions})
    return {int(position): effective_at for position, effective_at in rows}
