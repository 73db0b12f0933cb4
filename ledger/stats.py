"""Ledger-wide operational numbers, read from PostgreSQL across every tenant (for metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

# Upper bounds, in seconds, of the apply-latency buckets the database counts into.
APPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_APPLY_BUCKET_COLUMNS = ",\n".join(
    f"count(*) FILTER (WHERE status IN ('applied', 'rejected')"
    f" AND completed_at - created_at <= interval '{bound} seconds')"
    for bound in APPLY_BUCKETS
)
# One pass over transactions for every per-type number.
TRANSACTIONS_BY_OUTCOME = text(
    f"""
    SELECT type, status, coalesce(result_code, '') AS code, count(*) AS n,
           coalesce(sum(publish_count), 0) AS republished,
           count(*) FILTER (WHERE status IN ('applied', 'rejected')) AS decided,
           coalesce(sum(extract(epoch FROM completed_at - created_at))
                    FILTER (WHERE status IN ('applied', 'rejected')), 0) AS latency_sum,
           {_APPLY_BUCKET_COLUMNS}
    FROM transactions
    GROUP BY type, status, result_code
    """
)
# The posting engine stamps every transaction of a batch with the batch's transaction
# time (`completed_at = now()`), so transactions sharing a `completed_at` are one batch.
BATCH_SIZES = text(
    """
    SELECT size, count(*) FROM (
        SELECT count(*) AS size FROM transactions
        WHERE status IN ('applied', 'rejected')
        GROUP BY completed_at
    ) batches
    GROUP BY size
    """
)
# The partial index on queued rows makes this a short index scan.
OLDEST_QUEUED = text(
    """
    SELECT extract(epoch FROM now() - created_at) FROM transactions
    WHERE status = 'queued' ORDER BY seq LIMIT 1
    """
)
HAS_WEBHOOK_DELIVERIES = text(
    """
    SELECT count(*) = 2 FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'webhook_deliveries'
      AND column_name IN ('status', 'attempts')
    """
)
WEBHOOK_DELIVERIES = text(
    "SELECT status, count(*), coalesce(sum(attempts), 0) FROM webhook_deliveries GROUP BY status"
)


@dataclass(frozen=True)
class OutcomeCount:
    type: str
    status: str
    code: str  # the result code; '' when there is none
    count: int


@dataclass(frozen=True)
class TransactionStats:
    outcomes: list[OutcomeCount]
    republished: int
    decided: int
    # Seconds from acceptance to outcome, summed over the decided transactions.
    latency_sum: float
    # Decided transactions within each bound of APPLY_BUCKETS (cumulative, bound by bound).
    latency_buckets: list[int]


@dataclass(frozen=True)
class DeliveryCount:
    status: str
    count: int
    attempts: int


def limit_statement_time(conn: Connection, milliseconds: int) -> None:
    """Cap every statement of the connection's current transaction at `milliseconds`."""
    conn.execute(text(f"SET LOCAL statement_timeout = {int(milliseconds)}"))


def transaction_stats(conn: Connection) -> TransactionStats:
    """Transactions by type, status and result code, with relay and apply-latency totals."""
    outcomes: list[OutcomeCount] = []
    latency_buckets = [0] * len(APPLY_BUCKETS)
    decided, latency_sum, republished = 0, 0.0, 0
    for row in conn.execute(TRANSACTIONS_BY_OUTCOME):
        outcomes.append(OutcomeCount(row[0], row[1], row[2], int(row[3])))
        republished += int(row[4])
        decided += int(row[5])
        latency_sum += float(row[6])
        for index, in_bucket in enumerate(row[7:]):
            latency_buckets[index] += int(in_bucket)
    return TransactionStats(outcomes, republished, decided, latency_sum, latency_buckets)


def batch_sizes(conn: Connection) -> list[tuple[int, int]]:
    """(transactions decided in one posting batch, how many batches had that size), by size."""
    return sorted((int(size), int(n)) for size, n in conn.execute(BATCH_SIZES))


def oldest_queued_age(conn: Connection) -> float:
    """Seconds the oldest still-queued transaction has waited; 0 when none is queued."""
    age = conn.execute(OLDEST_QUEUED).scalar()
    return float(age or 0)


def webhook_delivery_counts(conn: Connection) -> list[DeliveryCount] | None:
    """Webhook deliveries and their attempts by status; None without the deliveries table."""
    # Webhook deliveries are another component's tables: read them only if they exist.
    if not conn.execute(HAS_WEBHOOK_DELIVERIES).scalar():
        return None
    return [
        DeliveryCount(status, int(count), int(tried))
        for status, count, tried in conn.execute(WEBHOOK_DELIVERIES)
    ]
