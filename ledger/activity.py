"""One tenant's recent activity, for the console's overview: what was submitted, applied,
rejected (by code) and failed in the last hour and day, the queue, webhook deliveries,
and the series its charts draw. Every query names its tenant and reads at most a day."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from ledger.vocabulary import TransactionStatus

OUTCOMES = text(
    """
    SELECT status, coalesce(result_code, '') AS code,
           count(*) FILTER (WHERE created_at >= now() - interval '1 hour') AS hour,
           count(*) AS day
    FROM transactions
    WHERE tenant_id = :tenant_id AND created_at >= now() - interval '1 day'
    GROUP BY status, result_code
    """
)
QUEUE = text(
    """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM transactions WHERE tenant_id = :tenant_id AND status = 'queued'
    """
)
DELIVERIES = text(
    """
    SELECT d.status,
           count(*) FILTER (WHERE d.created_at >= now() - interval '1 hour') AS hour,
           count(*) AS day
    FROM webhook_deliveries d
    WHERE d.endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = :tenant_id)
      AND d.tenant_id = :tenant_id AND d.created_at >= now() - interval '1 day'
    GROUP BY d.status
    """
)
# The last hour, minute by minute, on ix_transactions_tenant_completed.
APPLIED_PER_MINUTE = text(
    """
    SELECT date_trunc('minute', completed_at) AS minute, count(*)
    FROM transactions
    WHERE tenant_id = :tenant_id AND status = 'applied'
      AND completed_at >= date_trunc('minute', now()) - interval '59 minutes'
    GROUP BY 1
    """
)
LATENCY_PER_FIVE_MINUTES = text(
    """
    SELECT to_timestamp(floor(extract(epoch FROM completed_at) / 300) * 300) AS bucket,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
               (ORDER BY extract(epoch FROM completed_at - created_at)) AS seconds
    FROM transactions
    WHERE tenant_id = :tenant_id AND status IN ('applied', 'rejected')
      AND completed_at >= now() - interval '1 hour'
    GROUP BY 1 ORDER BY 1
    """
)
NOW_MINUTE = text("SELECT date_trunc('minute', now())")


@dataclass
class Window:
    """Counts over one window (the last hour or day)."""

    submitted: int = 0
    queued: int = 0
    applied: int = 0
    rejected: int = 0
    failed: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)


@dataclass
class Activity:
    hour: Window
    day: Window
    queue_depth: int
    oldest_queued_seconds: float
    # (minute, transactions applied in it), the last 60 minutes, oldest first.
    applied_per_minute: list[tuple[datetime, int]]
    # (start of a 5-minute bucket, p50, p95, p99 in milliseconds), the last hour's twelve
    # buckets oldest first; None where nothing was decided in a bucket.
    latency: list[tuple[datetime, float | None, float | None, float | None]]


def _count(window: Window, status: str, code: str, n: int) -> None:
    window.submitted += n
    if status in list(TransactionStatus):
        setattr(window, status, getattr(window, status) + n)
    if status == TransactionStatus.REJECTED:
        window.rejections[code] = window.rejections.get(code, 0) + n
    if status == TransactionStatus.FAILED:
        window.failures[code] = window.failures.get(code, 0) + n


def tenant_activity(conn: Connection, tenant_id: uuid.UUID) -> Activity:
    params = {"tenant_id": tenant_id}
    hour, day = Window(), Window()
    for status, code, in_hour, in_day in conn.execute(OUTCOMES, params):
        _count(hour, status, code, int(in_hour))
        _count(day, status, code, int(in_day))
    for status, in_hour, in_day in conn.execute(DELIVERIES, params):
        hour.deliveries[status] = int(in_hour)
        day.deliveries[status] = int(in_day)
    depth, oldest = conn.execute(QUEUE, params).one()
    per_minute = {minute: int(n) for minute, n in conn.execute(APPLIED_PER_MINUTE, params)}
    now_minute = conn.execute(NOW_MINUTE).scalar_one()
    minutes = [now_minute - timedelta(minutes=back) for back in range(59, -1, -1)]
    percentiles = {
        bucket: [value * 1000 for value in seconds]
        for bucket, seconds in conn.execute(LATENCY_PER_FIVE_MINUTES, params)
    }
    this_bucket = now_minute - timedelta(minutes=now_minute.minute % 5)
    latency: list[tuple[datetime, float | None, float | None, float | None]] = []
    for back in range(11, -1, -1):
        bucket = this_bucket - timedelta(minutes=5 * back)
        p50, p95, p99 = percentiles.get(bucket, (None, None, None))
        latency.append((bucket, p50, p95, p99))
    return Activity(
        hour=hour,
        day=day,
        queue_depth=int(depth),
        oldest_queued_seconds=float(oldest),
        applied_per_minute=[(minute, per_minute.get(minute, 0)) for minute in minutes],
        latency=latency,
    )
