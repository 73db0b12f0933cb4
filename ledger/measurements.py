"""What `tally bench` and its chaos run read back from the ledger to measure the stack: how
far a run's transactions have got, their outcomes and timestamps, and the checks that
nothing accepted was lost or written twice (docs/performance.md#running-the-bench).

A run tells its transactions apart by their `reference_id` prefix. Every function reads on
the caller's connection, except `park_transaction`, the one write a measurement needs.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from ledger.db import UnitOfWork

# The bench keeps ids as text; the tests as UUIDs.
TenantId = uuid.UUID | str

SERVER_VERSION = text("SHOW server_version")
PROGRESS = text(
    "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FROM transactions"
    " WHERE tenant_id = :t AND reference_id LIKE :p"
)
OUTCOMES = text(
    """
    SELECT status, count(*),
           extract(epoch FROM min(created_at)), extract(epoch FROM max(completed_at)),
           array_agg(extract(epoch FROM completed_at - created_at))
             FILTER (WHERE completed_at IS NOT NULL)
    FROM transactions
    WHERE tenant_id = :t AND reference_id LIKE :p AND reference_id NOT LIKE :f
    GROUP BY status
    """
)
IDS_BY_REFERENCE = text(
    "SELECT id FROM transactions WHERE tenant_id = :t AND type = :type"
    " AND reference_id LIKE :p ORDER BY seq"
)
TIMESTAMPS = text(
    "SELECT extract(epoch FROM created_at), extract(epoch FROM completed_at)"
    " FROM transactions WHERE id = :id"
)
QUEUED = text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND status = 'queued'")
STATUS_COUNTS = text(
    "SELECT status, count(*) FROM transactions"
    " WHERE tenant_id = :t AND reference_id LIKE :p GROUP BY status"
)
DECIDED_AMONG = text(
    "SELECT count(*) FROM transactions WHERE tenant_id = :t AND id = ANY(:ids)"
    " AND status IN ('applied', 'rejected')"
)
DECIDED_EVENTS = text(
    "SELECT e.id FROM events e JOIN transactions t ON t.id = e.transaction_id"
    " WHERE t.tenant_id = :t AND t.status IN ('applied', 'rejected')"
)
# A transaction writes at most one entry per account: two are a journal written twice.
DOUBLED_ENTRIES = text(
    "SELECT count(*) FROM (SELECT transaction_id, account_id FROM entries"
    " WHERE tenant_id = :t GROUP BY 1, 2 HAVING count(*) > 1) twice"
)
# The worker claims only rows whose next attempt is due: a day away is never, for a run.
PARK = text("UPDATE transactions SET next_attempt_at = now() + interval '1 day' WHERE id = :id")


@dataclass
class Outcomes:
    """A run's transactions by status, with their first acceptance, last completion (Unix
    seconds) and each one's accept-to-complete seconds."""

    statuses: dict[str, int] = field(default_factory=dict)
    first_created: float = math.inf
    last_completed: float = 0.0
    latencies: list[float] = field(default_factory=list)


def server_version(conn: Connection) -> str:
    """PostgreSQL's version, as the server reports it."""
    return str(conn.execute(SERVER_VERSION).scalar_one())


def progress(conn: Connection, tenant_id: TenantId, reference_prefix: str) -> tuple[int, int]:
    """(still queued, recorded) among the tenant's transactions of this reference prefix."""
    queued, total = conn.execute(PROGRESS, {"t": tenant_id, "p": reference_prefix + "%"}).one()
    return int(queued), int(total)


def outcomes(
    conn: Connection, tenant_id: TenantId, reference_prefix: str, *, excluding: str
) -> Outcomes:
    """The outcomes of this reference prefix's transactions, leaving out the `excluding` one."""
    found = Outcomes()
    params = {"t": tenant_id, "p": reference_prefix + "%", "f": excluding + "%"}
    for status, count, created, completed, latencies in conn.execute(OUTCOMES, params):
        found.statuses[status] = int(count)
        found.first_created = min(found.first_created, float(created))
        if completed is not None:
            found.last_completed = max(found.last_completed, float(completed))
            found.latencies += [float(seconds) for seconds in latencies]
    return found


def ids_by_reference(
    conn: Connection, tenant_id: TenantId, transaction_type: str, reference_prefix: str
) -> list[str]:
    """The ids of this type and reference prefix, in the order they were accepted."""
    params = {"t": tenant_id, "type": transaction_type, "p": reference_prefix + "%"}
    return [str(found) for found in conn.execute(IDS_BY_REFERENCE, params).scalars()]


def timestamps(conn: Connection, transaction_id: str) -> tuple[float, float]:
    """A final transaction's `created_at` and `completed_at`, in Unix seconds."""
    created, completed = conn.execute(TIMESTAMPS, {"id": transaction_id}).one()
    return float(created), float(completed)


def queued_count(conn: Connection, tenant_id: TenantId) -> int:
    """How many of the tenant's transactions are still queued."""
    return int(conn.execute(QUEUED, {"t": tenant_id}).scalar_one())


def status_counts(
    conn: Connection, tenant_id: TenantId, reference_prefix: str = ""
) -> dict[str, int]:
    """How many of the tenant's transactions of this reference prefix are in each status."""
    rows = conn.execute(STATUS_COUNTS, {"t": tenant_id, "p": reference_prefix + "%"})
    return {status: int(count) for status, count in rows}


def decided_among(conn: Connection, tenant_id: TenantId, ids: Sequence[str]) -> int:
    """How many of these transaction ids are applied or rejected."""
    params = {"t": tenant_id, "ids": [uuid.UUID(one) for one in ids]}
    return int(conn.execute(DECIDED_AMONG, params).scalar_one())


def decided_event_ids(conn: Connection, tenant_id: TenantId) -> list[uuid.UUID]:
    """The outbox events of the tenant's applied and rejected transactions."""
    return list(conn.execute(DECIDED_EVENTS, {"t": tenant_id}).scalars())


def doubled_journal_lines(conn: Connection, tenant_id: TenantId) -> int:
    """How many (transaction, account) pairs of the tenant have more than one entry."""
    return int(conn.execute(DOUBLED_ENTRIES, {"t": tenant_id}).scalar_one())


def park_transaction(work: UnitOfWork, transaction_id: uuid.UUID) -> None:
    """Leave a queued transaction queued: its next attempt moves a day away."""
    work.connection.execute(PARK, {"id": transaction_id})
