"""The dispatcher's side of deliveries: claim due ones under a lease, record each attempt.

A claim marks deliveries `sending` with `next_attempt_at` moved to the end of a lease and
commits before anything is sent. A dispatcher that dies mid-send leaves the lease to expire;
the delivery is then due again and another dispatcher claims it (at-least-once). Results
are guarded by the attempt number: a late answer to an expired lease is logged, but it does
not overwrite what the newer attempt decided.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ledger.webhooks.endpoints import disable_gone_endpoint
from ledger.webhooks.signing import event_body, message_id

# A receiver's Retry-After is honoured, within reason.
MAX_RETRY_AFTER_SECONDS = 86_400
MAX_ERROR_LENGTH = 500
GONE = 410
GONE_REASON = "the endpoint answered 410 Gone"

# The scan looks further than it claims, so that one endpoint's backlog does not hide the
# deliveries due to other endpoints behind it.
SCAN_DUE = text(
    """
    SELECT id, endpoint_id FROM webhook_deliveries
    WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
      AND NOT endpoint_id = ANY(:full)
    ORDER BY next_attempt_at
    LIMIT :scan
    FOR UPDATE SKIP LOCKED
    """
)
LEASE = text(
    """
    UPDATE webhook_deliveries
    SET status = 'sending', attempts = attempts + 1, updated_at = now(),
        next_attempt_at = now() + make_interval(secs => :lease)
    WHERE id = ANY(:ids)
    """
)
LOAD_CLAIMED = text(
    """
    SELECT d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.attempts,
           coalesce(e.payload, d.payload) AS data,
           coalesce(e.created_at, d.created_at) AS occurred_at,
           w.url, w.enabled, w.secret,
           CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END
             AS previous_secret
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.id = d.endpoint_id
    LEFT JOIN events e ON e.id = d.event_id
    WHERE d.id = ANY(:ids)
    """
)
INSERT_ATTEMPT = text(
    """
    INSERT INTO webhook_attempts (delivery_id, tenant_id, attempt, attempted_at, status_code,
                                  latency_ms, response_body, error)
    VALUES (:delivery_id, :tenant_id, :attempt, :attempted_at, :status_code, :latency_ms,
            :response_body, :error)
    """
)
SETTLE = text(
    """
    UPDATE webhook_deliveries
    SET status = :status,
        next_attempt_at = CASE WHEN :status = 'pending'
            THEN now() + make_interval(secs => :delay) ELSE next_attempt_at END,
        last_attempt_at = :attempted_at, last_status_code = :status_code, last_error = :error,
        delivered_at = CASE WHEN :status = 'delivered' THEN now() END,
        updated_at = now()
    WHERE id = :id AND status = 'sending' AND attempts = :attempt
    """
)
NEXT_DUE = text(
    """
    SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now()) FROM webhook_deliveries
    WHERE status IN ('pending', 'sending')
    """
)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to this dispatcher, with everything needed to send it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    attempt: int
    message_id: str
    url: str
    enabled: bool
    secrets: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt came to: an answer from the receiver, or an error."""

    attempted_at: datetime
    latency_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after_seconds: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(
    conn: Connection,
    *,
    limit: int,
    room_for: Callable[[uuid.UUID], int],
    full: Collection[uuid.UUID],
    lease_seconds: float,
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries, at most `room_for(endpoint)` per endpoint."""
    if limit <= 0:
        return []
    candidates = conn.execute(SCAN_DUE, {"full": list(full), "scan": limit * 4}).all()
    chosen: list[uuid.UUID] = []
    taken: Counter[uuid.UUID] = Counter()
    for delivery_id, endpoint_id in candidates:
        if len(chosen) == limit:
            break
        if taken[endpoint_id] < room_for(endpoint_id):
            chosen.append(delivery_id)
            taken[endpoint_id] += 1
    if not chosen:
        return []
    conn.execute(LEASE, {"ids": chosen, "lease": lease_seconds})
    claimed = []
    for row in conn.execute(LOAD_CLAIMED, {"ids": chosen}).mappings():
        secrets: tuple[str, ...] = (row["secret"],)
        if row["previous_secret"] is not None:
            secrets += (row["previous_secret"],)
        claimed.append(
            ClaimedDelivery(
                id=row["id"],
                tenant_id=row["tenant_id"],
                endpoint_id=row["endpoint_id"],
                attempt=row["attempts"],
                message_id=message_id(row["event_id"] or row["id"]),
                url=row["url"],
                enabled=row["enabled"],
                secrets=secrets,
                body=event_body(row["event_type"], row["occurred_at"], row["data"]),
            )
        )
    return claimed


def retry_delay(
    schedule: Sequence[int], attempts_made: int, retry_after: float | None
) -> float | None:
    """Seconds until the next attempt, or None when the schedule is used up.

    `schedule[n]` is the wait before attempt n + 1: the first entry is the first attempt.
    """
    if attempts_made >= len(schedule):
        return None
    delay = float(schedule[attempts_made])
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def record_attempt(
    conn: Connection, delivery: ClaimedDelivery, result: AttemptResult, schedule: Sequence[int]
) -> str:
    """Log the attempt and settle the delivery: delivered, pending a retry, or failed."""
    error = result.error[:MAX_ERROR_LENGTH] if result.error else None
    conn.execute(
        INSERT_ATTEMPT,
        {
            "delivery_id": delivery.id,
            "tenant_id": delivery.tenant_id,
            "attempt": delivery.attempt,
            "attempted_at": result.attempted_at,
            "status_code": result.status_code,
            "latency_ms": max(0, result.latency_ms),
            "response_body": result.response_body,
            "error": error,
        },
    )
    delay: float | None = None
    if result.succeeded:
        status = "delivered"
    elif result.status_code == GONE:
        status = "failed"
        disable_gone_endpoint(conn, delivery.endpoint_id, GONE_REASON)
    else:
        delay = retry_delay(schedule, delivery.attempt, result.retry_after_seconds)
        status = "failed" if delay is None else "pending"
    if error is None and not result.succeeded:
        error = f"HTTP {result.status_code}"
    conn.execute(
        SETTLE,
        {
            "id": delivery.id,
            "attempt": delivery.attempt,
            "status": status,
            "delay": delay or 0.0,
            "attempted_at": result.attempted_at,
            "status_code": result.status_code,
            "error": error,
        },
    )
    return status


def fail_unsendable(conn: Connection, delivery: ClaimedDelivery, reason: str) -> None:
    """Settle a claimed delivery that must not be sent (its endpoint was disabled meanwhile)."""
    conn.execute(
        text(
            """
            UPDATE webhook_deliveries
            SET status = 'failed', last_error = :reason, updated_at = now()
            WHERE id = :id AND status = 'sending' AND attempts = :attempt
            """
        ),
        {"id": delivery.id, "attempt": delivery.attempt, "reason": reason},
    )


def seconds_until_next_due(conn: Connection) -> float | None:
    """How long until some delivery is due (negative: already), None when none is waiting."""
    value = conn.execute(NEXT_DUE).scalar()
    return float(value) if value is not None else None
