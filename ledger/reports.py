"""Reports of a tenant in ledger time: the trial balance of an asset as of a moment, and the
money that moved in and out of wallets per interval and transaction type.

Both count entries by their `effective_at` (docs/design.md#ledger-time). The trial balance
computes the system accounts as of the moment (ledger/ledger_time.py: latest snapshot plus
the entries since) and the wallets' total independently: today's total minus what wallets
moved after the moment (a range of the `(tenant_id, effective_at)` index). Both in one
statement, so one snapshot of the database: the lines sum to zero, or the ledger is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from ledger.errors import AssetNotFound, InvalidRequest
from ledger.ledger_time import AS_OF_BALANCE, AS_OF_JOIN

WALLETS = "wallets"
TRIAL_BALANCE = text(
    f"""
    WITH system AS (
        SELECT a.owner, {AS_OF_BALANCE} AS balance
        FROM accounts a
        {AS_OF_JOIN}
        WHERE a.tenant_id = :tenant_id AND a.asset_code = :asset_code AND a.is_system
    ),
    wallets AS (
        SELECT coalesce(sum(a.balance), 0) AS balance, count(*) AS accounts
        FROM accounts a
        WHERE a.tenant_id = :tenant_id AND a.asset_code = :asset_code AND NOT a.is_system
    ),
    later AS (
        SELECT coalesce(sum(e.amount), 0) AS moved
        FROM entries e JOIN accounts a ON a.id = e.account_id
        WHERE e.tenant_id = :tenant_id AND e.effective_at > :as_of
          AND a.asset_code = :asset_code AND NOT a.is_system
    )
    SELECT owner, balance, NULL AS accounts FROM system
    UNION ALL
    SELECT '{WALLETS}', w.balance - l.moved, w.accounts FROM wallets w CROSS JOIN later l
    """
)
ASSET_EXISTS = text("SELECT 1 FROM assets WHERE tenant_id = :tenant_id AND code = :asset_code")

# Credits and debits of wallets only: the money that entered and left users' hands. The
# system side of each is its mirror image (every transaction sums to zero), so counting
# it too would only double every line.
MOVEMENTS = text(
    """
    SELECT date_trunc(:interval, e.effective_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start,
           t.type,
           coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS credited,
           count(*) FILTER (WHERE e.amount > 0) AS credits,
           coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS debited,
           count(*) FILTER (WHERE e.amount < 0) AS debits
    FROM entries e
    JOIN accounts a ON a.id = e.account_id
    JOIN transactions t ON t.id = e.transaction_id
    WHERE e.tenant_id = :tenant_id AND e.effective_at >= :start AND e.effective_at < :end
      AND a.asset_code = :asset_code AND NOT a.is_system
    GROUP BY 1, 2
    ORDER BY 1, 2
    """
)
INTERVALS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
# At most about a year of days or a month of hours in one answer.
MAX_BUCKETS = {"day": 366, "hour": 31 * 24}


def trial_balance_view(lines: Iterable[tuple[str, int, int | None]]) -> dict[str, Any]:
    """The trial balance of one asset from its lines (system account name or WALLETS,
    balance, wallet count): each system account, the wallets' total, and their sum."""
    system: list[dict[str, Any]] = []
    wallets: dict[str, Any] = {"balance": 0, "accounts": 0}
    for owner, balance, accounts in lines:
        if owner == WALLETS:
            wallets = {"balance": int(balance), "accounts": int(accounts or 0)}
        else:
            system.append({"name": owner, "balance": int(balance)})
    system.sort(key=lambda line: line["name"])
    total = wallets["balance"] + sum(line["balance"] for line in system)
    return {"wallets": wallets, "system_accounts": system, "total": {"balance": total}}


def _require_asset(conn: Connection, tenant_id: uuid.UUID, asset_code: str) -> None:
    found = conn.execute(ASSET_EXISTS, {"tenant_id": tenant_id, "asset_code": asset_code})
    if found.first() is None:
        raise AssetNotFound(f"asset {asset_code} not found", field="asset_code")


def trial_balance(
    conn: Connection, tenant_id: uuid.UUID, asset_code: str, as_of: datetime | None = None
) -> dict[str, Any]:
    """Every system account's balance of `asset_code` as of `as_of` (default: now), the
    wallets' total then, and their sum, which is zero."""
    _require_asset(conn, tenant_id, asset_code)
    as_of = as_of or datetime.now(UTC)
    rows = conn.execute(
        TRIAL_BALANCE,
        {"tenant_id": tenant_id, "asset_code": asset_code, "as_of": as_of, "known_at": None},
    )
    return {
        "asset_code": asset_code,
        "as_of": as_of.isoformat(),
        **trial_balance_view(rows.all()),
    }


def movements(
    conn: Connection,
    tenant_id: uuid.UUID,
    asset_code: str,
    start: datetime,
    end: datetime,
    interval: str,
) -> dict[str, Any]:
    """What wallets of `asset_code` were credited and debited by entries effective in
    [start, end), per UTC `interval` ('day' or 'hour') and transaction type; buckets
    without movement are left out."""
    if interval not in INTERVALS:
        raise InvalidRequest("invalid_interval", "interval must be day or hour", field="interval")
    if end <= start:
        raise InvalidRequest("invalid_range", "to must be later than from", field="to")
    if end - start > INTERVALS[interval] * MAX_BUCKETS[interval]:
        raise InvalidRequest(
            "range_too_long",
            f"at most {MAX_BUCKETS[interval]} {interval}s in one report",
            field="to",
        )
    _require_asset(conn, tenant_id, asset_code)
    rows = conn.execute(
        MOVEMENTS,
        {
            "tenant_id": tenant_id,
            "asset_code": asset_code,
            "start": start,
            "end": end,
            "interval": interval,
        },
    ).mappings()
    buckets: dict[datetime, list[dict[str, Any]]] = {}
    for row in rows:
        buckets.setdefault(row["start"], []).append(
            {
                "type": row["type"],
                "credits": {"amount": int(row["credited"]), "count": row["credits"]},
                "debits": {"amount": int(row["debited"]), "count": row["debits"]},
            }
        )
    return {
        "asset_code": asset_code,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "interval": interval,
        "buckets": [
            {"start": bucket.astimezone(UTC).isoformat(), "types": types}
            for bucket, types in buckets.items()
        ],
    }
