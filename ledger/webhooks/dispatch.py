"""The dispatcher's side of deliveries: claim due ones under a lease, record each attempt.

A claim marks deliveries `sending` with `next_attempt_at` moved to the end of a lease and
commits before anything is sent. A dispatcher that dies mid-send leaves the lease to expire;
the delivery is then due again and another dispatcher claims it (at-least-once). Results
are guarded by the attempt number: a late answer to an expired lease is logged, but it does
not overwrite what the newer attempt decided.

Claims take turns across tenants, and across each tenant's endpoints, so that one tenant's
backlog does not push other tenants' webhooks behind it. Whatever a receiver answers is
stored as PostgreSQL can hold it, so that recording an attempt cannot fail on its bytes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ledger.db import UnitOfWork
from ledger.feed import event_cursor
from ledger.transaction_request import UNSTORABLE
from ledger.vocabulary import DeliveryStatus
from ledger.webhooks.endpoints import disable_gone_endpoint
from ledger.webhooks.secrets import SecretBox, SecretUnreadable
from ledger.webhooks.signing import event_body, message_id

# A receiver's Retry-After is honoured, within reason.
MAX_RETRY_AFTER_SECONDS = 86_400
MAX_ERROR_LENGTH = 500
MAX_RESPONSE_BODY_LENGTH = 1024
MAX_LATENCY_MS = 2**31 - 1  # an integer column
GONE = 410
GONE_REASON = "the endpoint answered 410 Gone"

# Turns: every tenant's first due delivery, then every tenant's second, and so on; within
# a tenant its endpoints take turns the same way. Turns are counted over the oldest
# `:window` due deliveries, one range of ix_webhook_deliveries_due; tenants and endpoints
# already holding their share are left out of that range, so a backlog longer than the
# window hides the others only until its tenant holds its share (the next claim). The
# ranking reads without locks; LOCK_CANDIDATES then locks the few candidates by key.
RANK_DUE = text(
    """
    WITH due AS MATERIALIZED (
        SELECT id, tenant_id, endpoint_id, next_attempt_at FROM webhook_deliveries
        WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
          AND NOT endpoint_id = ANY(:full_endpoints) AND NOT tenant_id = ANY(:full_tenants)
        ORDER BY next_attempt_at
        LIMIT :window
    ), endpoint_turns AS (
        SELECT id, tenant_id, endpoint_id, next_attempt_at,
               row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id)
                 AS endpoint_turn
        FROM due
    ), turns AS (
        SELECT id, tenant_id, endpoint_id, next_attempt_at,
               row_number() OVER (PARTITION BY tenant_id
                                  ORDER BY endpoint_turn, next_attempt_at, id) AS tenant_turn
        FROM endpoint_turns
        WHERE endpoint_turn <= :most
    )
    SELECT id, tenant_id, endpoint_id FROM turns
    WHERE tenant_turn <= :most
    ORDER BY tenant_turn, next_attempt_at, id
    LIMIT :scan
    """
)
LOCK_CANDIDATES = text(
    """
    SELECT id FROM webhook_deliveries
    WHERE id = ANY(:ids) AND status IN ('pending', 'sending') AND next_attempt_at <= now()
    FOR UPDATE SKIP LOCKED
    """
)
# Due deliveries over which turns are counted: about a millisecond of work per claim.
SCAN_WINDOW = 1_000
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
           e.xid::text AS event_xid, e.position AS event_position,
           w.url, w.enabled, w.secret_sealed,
           CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret_sealed END
             AS previous_secret_sealed
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
    # Why it cannot be signed (its secret does not open with the configured keys), if so.
    unsignable: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt came to: an answer from the receiver, or an error."""

    attempted_at: datetime
    latency_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after_seconds: float | None = None
    reason: str | None = None  # the reason phrase of the status line

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(
    work: UnitOfWork,
    *,
    limit: int,
    room_for: Callable[[uuid.UUID], int],
    full: Collection[uuid.UUID],
    lease_seconds: float,
    box: SecretBox,
    tenant_room_for: Callable[[uuid.UUID], int] | None = None,
    full_tenants: Collection[uuid.UUID] = (),
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries, tenants taking turns, with their endpoints'
    secrets opened from `box`.

    At most `room_for(endpoint)` per endpoint and `tenant_room_for(tenant)` per tenant;
    `full` and `full_tenants` have no room left at all.
    """
    conn = work.connection
    if limit <= 0:
        return []
    candidates = conn.execute(
        RANK_DUE,
        {
            "full_endpoints": list(full),
            "full_tenants": list(full_tenants),
            "window": SCAN_WINDOW,
            "most": limit,
            "scan": limit * 4,
        },
    ).all()
    if not candidates:
        return []
    # Another dispatcher may hold some, or have claimed them since the ranking read.
    free = set(conn.execute(LOCK_CANDIDATES, {"ids": [c.id for c in candidates]}).scalars().all())
    chosen: list[uuid.UUID] = []
    by_endpoint: Counter[uuid.UUID] = Counter()
    by_tenant: Counter[uuid.UUID] = Counter()
    for delivery_id, tenant_id, endpoint_id in candidates:
        if len(chosen) == limit:
            break
        if delivery_id not in free:
            continue
        if by_endpoint[endpoint_id] >= room_for(endpoint_id):
            continue
        if tenant_room_for is not None and by_tenant[tenant_id] >= tenant_room_for(tenant_id):
            continue
        chosen.append(delivery_id)
        by_endpoint[endpoint_id] += 1
        by_tenant[tenant_id] += 1
    if not chosen:
        return []
    conn.execute(LEASE, {"ids": chosen, "lease": lease_seconds})
    claimed = []
    for row in conn.execute(LOAD_CLAIMED, {"ids": chosen}).mappings():
        sealed = [row["secret_sealed"]]
        if row["previous_secret_sealed"] is not None:
            sealed.append(row["previous_secret_sealed"])
        unsignable = None
        try:
            secrets = tuple(box.open(token) for token in sealed)
        except SecretUnreadable as error:
            secrets, unsignable = (), f"the endpoint's signing secret cannot be opened: {error}"
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
                body=event_body(
                    row["event_type"],
                    row["occurred_at"],
                    row["data"],
                    # The event's place in GET /events, for a receiver to catch up from.
                    event_cursor(row["event_xid"], row["event_position"])
                    if row["event_position"] is not None
                    else None,
                ),
                unsignable=unsignable,
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


def storable(value: str | None, limit: int) -> str | None:
    """The text as PostgreSQL can store it (no NUL, no lone surrogate), cut to `limit`."""
    if value is None:
        return None
    return UNSTORABLE.sub("", value)[:limit]


def _last_error(result: AttemptResult) -> str | None:
    if result.error:
        return storable(result.error, MAX_ERROR_LENGTH)
    if result.status_code is None:
        return "no answer"
    if result.succeeded:
        return None
    reason = storable(result.reason, MAX_ERROR_LENGTH) or ""
    return f"HTTP {result.status_code} {reason}".strip()[:MAX_ERROR_LENGTH]


def record_attempt(
    work: UnitOfWork, delivery: ClaimedDelivery, result: AttemptResult, schedule: Sequence[int]
) -> str:
    """Log the attempt and settle the delivery: delivered, pending a retry, or failed."""
    conn = work.connection
    error = storable(result.error, MAX_ERROR_LENGTH) or None
    if error is None and result.status_code is None:
        error = "no answer"
    conn.execute(
        INSERT_ATTEMPT,
        {
            "delivery_id": delivery.id,
            "tenant_id": delivery.tenant_id,
            "attempt": delivery.attempt,
            "attempted_at": result.attempted_at,
            "status_code": result.status_code,
            "latency_ms": min(max(0, result.latency_ms), MAX_LATENCY_MS),
            "response_body": storable(result.response_body, MAX_RESPONSE_BODY_LENGTH),
            "error": error,
        },
    )
    delay: float | None = None
    if result.succeeded:
        status = DeliveryStatus.DELIVERED
    elif result.status_code == GONE:
        status = DeliveryStatus.FAILED
        disable_gone_endpoint(conn, delivery.endpoint_id, GONE_REASON)
    else:
        delay = retry_delay(schedule, delivery.attempt, result.retry_after_seconds)
        status = DeliveryStatus.FAILED if delay is None else DeliveryStatus.PENDING
    conn.execute(
        SETTLE,
        {
            "id": delivery.id,
            "attempt": delivery.attempt,
            "status": status,
            "delay": delay or 0.0,
            "attempted_at": result.attempted_at,
            "status_code": result.status_code,
            "error": _last_error(result),
        },
    )
    return status


def fail_unsendable(work: UnitOfWork, delivery: ClaimedDelivery, reason: str) -> None:
    """Settle a claimed delivery that must not be sent (its endpoint was disabled meanwhile)."""
    conn = work.connection
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
