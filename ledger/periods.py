"""Closing periods: a tenant declares everything effective up to `through` final.

A close records, in one commit, a `close` balance snapshot of every account of the tenant
as of `through` (ledger/ledger_time.py's computation, set-based), the period's trial
balance per asset (`period_closes.summary`), and `tenants.closed_through`. From then on
intake refuses anything effective at or before it (`period_closed`), so the snapshots stay
exact and every later as-of read starts from them.

The close and intake agree through one advisory lock per tenant: intake takes it shared
before it reads `closed_through` and holds it until its commit; the close takes it
exclusively before anything else. So either a submission into the period committed first,
and the close sees it queued and refuses (`period_not_quiet`), or the close committed
first and intake reads the new `closed_through` and refuses the submission.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import Conflict, InvalidRequest
from ledger.ledger_time import AS_OF_BALANCE, AS_OF_ENTRY_COUNT, AS_OF_JOIN
from ledger.reports import WALLETS, trial_balance_view

# A posting batch stamps its entries with the time its transaction began, and may commit
# a moment later: a close reaches at most this far back from now, so that no batch in
# flight can still write at or before `through`.
CLOSE_LAG_SECONDS = 60

# Exclusive here, shared in intake (see the module docstring); its own statement, so that
# what follows reads what the holders of the shared lock committed.
LOCK_TENANT_CLOSE = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('tally-close:' || CAST(:tenant_id AS text), 0))"
)
READ_TENANT = text(
    "SELECT closed_through, now() AS now FROM tenants WHERE id = :tenant_id FOR UPDATE"
)
# What could still land in the period: a queued transaction effective at or before
# `through` (one without its own effective_at counts from its posting, at or after its
# acceptance), or a failed one that asked for such a time (a requeue would post it there).
NOT_QUIET = text(
    """
    SELECT count(*) FROM transactions
    WHERE tenant_id = :tenant_id
      AND ((status = 'queued' AND coalesce(effective_at, created_at) <= :through)
           OR (status = 'failed' AND effective_at <= :through))
    """
)
WRITE_CLOSE_SNAPSHOTS = text(
    f"""
    WITH written AS (
        INSERT INTO balance_snapshots (account_id, tenant_id, kind, effective_through,
                                       recorded_through, balance, entry_count)
        SELECT a.id, a.tenant_id, 'close', :as_of, :now,
               {AS_OF_BALANCE}, {AS_OF_ENTRY_COUNT}
        FROM accounts a
        {AS_OF_JOIN}
        WHERE a.tenant_id = :tenant_id
        RETURNING account_id, balance, entry_count
    )
    SELECT a.asset_code, CASE WHEN a.is_system THEN a.owner ELSE '{WALLETS}' END AS line,
           sum(w.balance) AS balance, count(*) FILTER (WHERE NOT a.is_system) AS wallets,
           sum(w.entry_count) AS entries
    FROM written w JOIN accounts a ON a.id = w.account_id
    GROUP BY 1, 2
    ORDER BY 1, 2
    """
)
LAST_SUMMARY = text(
    "SELECT summary FROM period_closes WHERE tenant_id = :tenant_id ORDER BY through DESC LIMIT 1"
)
INSERT_CLOSE = text(
    """
    INSERT INTO period_closes (tenant_id, through, closed_at, actor, summary)
    VALUES (:tenant_id, :through, :now, :actor, CAST(:summary AS jsonb))
    RETURNING id, through, closed_at, actor, summary
    """
)
SET_CLOSED_THROUGH = text("UPDATE tenants SET closed_through = :through WHERE id = :tenant_id")
LIST_CLOSES = text(
    """
    SELECT id, through, closed_at, actor, summary FROM period_closes
    WHERE tenant_id = :tenant_id ORDER BY through DESC
    """
)


class PeriodAlreadyClosed(Conflict):
    """Closes move forward only: `through` must be later than the last close."""

    code = "period_already_closed"


class PeriodNotQuiet(Conflict):
    """A queued or failed transaction could still land in the period."""

    code = "period_not_quiet"


def close_period(
    work: UnitOfWork, tenant_id: uuid.UUID, through: datetime, *, actor: Actor
) -> dict[str, Any]:
    """Close the tenant's ledger through `through`: snapshot every account's balance as of
    it, record the close and its trial balance, and refuse anything effective at or before
    it from now on. Audited."""
    if through.tzinfo is None:
        raise InvalidRequest("invalid_through", "through must carry a time zone", field="through")
    conn = work.connection
    conn.execute(LOCK_TENANT_CLOSE, {"tenant_id": tenant_id})
    tenant = conn.execute(READ_TENANT, {"tenant_id": tenant_id}).one()
    if (tenant.now - through).total_seconds() < CLOSE_LAG_SECONDS:
        raise InvalidRequest(
            "invalid_through",
            f"through must be at least {CLOSE_LAG_SECONDS} seconds in the past",
            field="through",
        )
    previous: datetime | None = tenant.closed_through
    if previous is not None and through <= previous:
        raise PeriodAlreadyClosed(
            f"the ledger is closed through {previous.isoformat()}: closes move forward only",
            field="through",
        )
    waiting = conn.execute(NOT_QUIET, {"tenant_id": tenant_id, "through": through}).scalar_one()
    if waiting:
        raise PeriodNotQuiet(
            f"{waiting} queued or failed transactions could still land at or before through:"
            " let them be applied, or rejected, first",
            field="through",
        )
    lines = conn.execute(
        WRITE_CLOSE_SNAPSHOTS,
        {"tenant_id": tenant_id, "as_of": through, "now": tenant.now, "known_at": None},
    ).all()
    last = conn.execute(LAST_SUMMARY, {"tenant_id": tenant_id}).scalar_one_or_none() or {}
    summary = _summary(lines, last)
    row = (
        conn.execute(
            INSERT_CLOSE,
            {
                "tenant_id": tenant_id,
                "through": through,
                "now": tenant.now,
                "actor": actor.label,
                "summary": json.dumps(summary),
            },
        )
        .mappings()
        .one()
    )
    conn.execute(SET_CLOSED_THROUGH, {"tenant_id": tenant_id, "through": through})
    audit.append_event(
        conn,
        tenant_id,
        actor,
        "period.closed",
        f"period:{through.isoformat()}",
        {"previous": previous.isoformat() if previous else None},
    )
    return close_view(row)


def _summary(lines: Sequence[Any], last: dict[str, Any]) -> dict[str, Any]:
    """Per asset, the trial balance as of the close, the entries effective by then, and
    those of this period (since the previous close)."""
    by_asset: dict[str, list[tuple[str, int, int]]] = {}
    entries: dict[str, int] = {}
    for asset_code, line, balance, wallets, count in lines:
        by_asset.setdefault(asset_code, []).append((line, balance, wallets))
        entries[asset_code] = entries.get(asset_code, 0) + int(count)
    summary = {}
    for asset_code, asset_lines in by_asset.items():
        before = last.get(asset_code, {}).get("entries", 0)
        summary[asset_code] = {
            **trial_balance_view(asset_lines),
            "entries": entries[asset_code],
            "entries_in_period": entries[asset_code] - before,
        }
    return summary


def close_view(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "through": row["through"].isoformat(),
        "closed_at": row["closed_at"].isoformat(),
        "actor": row["actor"],
        "summary": row["summary"],
    }


def list_periods(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's closes, latest first."""
    return [
        close_view(row) for row in conn.execute(LIST_CLOSES, {"tenant_id": tenant_id}).mappings()
    ]
