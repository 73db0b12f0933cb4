"""Deliveries as the API sees them: the log of attempts, manual redelivery, test events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger.db import UnitOfWork
from ledger.events import WEBHOOK_NOTIFY_CHANNEL
from ledger.pagination import decode_cursor, encode_cursor, page_size
from ledger.views import iso
from ledger.vocabulary import WEBHOOK_TEST_EVENT, DeliveryStatus
from ledger.webhooks.errors import (
    DeliveryInFlight,
    DeliveryNotFound,
    EndpointDisabled,
    EndpointNotFound,
)
from ledger.webhooks.signing import message_id

DELIVERY_COLUMNS = """
    d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,
    d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at,
    d.updated_at
"""
RESTART = """
    status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL,
    updated_at = now()
"""


def attempt_view(row: RowMapping) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "attempted_at": iso(row["attempted_at"]),
        "status_code": row["status_code"],
        "latency_ms": row["latency_ms"],
        "response_body": row["response_body"],
        "error": row["error"],
    }


def delivery_view(row: RowMapping, attempts: Sequence[RowMapping] = ()) -> dict[str, Any]:
    """A delivery with its attempts, oldest attempt first."""
    return {
        "id": str(row["id"]),
        "endpoint_id": str(row["endpoint_id"]),
        "event_id": str(row["event_id"]) if row["event_id"] else None,
        "message_id": message_id(row["event_id"] or row["id"]),
        "event_type": row["event_type"],
        "status": row["status"],
        "attempt_count": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"])
        if row["status"] == DeliveryStatus.PENDING
        else None,
        "last_attempt_at": iso(row["last_attempt_at"]),
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "delivered_at": iso(row["delivered_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "attempts": [attempt_view(attempt) for attempt in attempts],
    }


def _endpoint(
    conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *, must_be_enabled: bool
) -> None:
    enabled = conn.execute(
        text(
            "SELECT enabled FROM webhook_endpoints"
            " WHERE tenant_id = :tenant_id AND id = :id AND deleted_at IS NULL"
        ),
        {"tenant_id": tenant_id, "id": endpoint_id},
    ).scalar()
    if enabled is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    if must_be_enabled and not enabled:
        raise EndpointDisabled("the endpoint is disabled; enable it first")


def _with_attempts(conn: Connection, rows: Sequence[RowMapping]) -> list[dict[str, Any]]:
    attempts: dict[uuid.UUID, list[RowMapping]] = {row["id"]: [] for row in rows}
    if rows:
        for attempt in conn.execute(
            text(
                "SELECT * FROM webhook_attempts WHERE delivery_id = ANY(:ids)"
                " ORDER BY delivery_id, attempted_at, id"
            ),
            {"ids": list(attempts)},
        ).mappings():
            attempts[attempt["delivery_id"]].append(attempt)
    return [delivery_view(row, attempts[row["id"]]) for row in rows]


def _delivery_cursor(created_at: datetime, delivery_id: uuid.UUID) -> str:
    return encode_cursor(f"d1|{created_at.isoformat()}|{delivery_id}")


def _delivery_position(position: str) -> tuple[datetime, uuid.UUID]:
    """Where a page continues: (created_at, delivery id)."""
    prefix, created_at, delivery_id = position.split("|")
    if prefix != "d1":
        raise ValueError(prefix)
    return datetime.fromisoformat(created_at), uuid.UUID(delivery_id)


def list_deliveries(
    conn: Connection,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """An endpoint's deliveries, newest first, each with its attempts; keyset pages."""
    _endpoint(conn, tenant_id, endpoint_id, must_be_enabled=False)
    limit = page_size(limit)
    before_at, before_id = decode_cursor(cursor, _delivery_position) if cursor else (None, None)
    rows = (
        conn.execute(
            text(
                f"""
                SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
                WHERE d.tenant_id = :tenant_id AND d.endpoint_id = :endpoint_id
                  AND (CAST(:status AS text) IS NULL OR d.status = :status)
                  AND (CAST(:before_at AS timestamptz) IS NULL
                       OR (d.created_at, d.id) < (:before_at, :before_id))
                ORDER BY d.created_at DESC, d.id DESC
                LIMIT :limit
                """
            ),
            {
                "tenant_id": tenant_id,
                "endpoint_id": endpoint_id,
                "status": status,
                "before_at": before_at,
                "before_id": before_id,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    page = rows[:limit]
    next_cursor = (
        _delivery_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    )
    return {"items": _with_attempts(conn, page), "next_cursor": next_cursor}


def _delivery_row(
    conn: Connection,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    lock: bool = False,
) -> RowMapping:
    row = (
        conn.execute(
            text(
                f"""
                SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
                WHERE d.tenant_id = :tenant_id AND d.endpoint_id = :endpoint_id AND d.id = :id
                {"FOR UPDATE" if lock else ""}
                """
            ),
            {"tenant_id": tenant_id, "endpoint_id": endpoint_id, "id": delivery_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise DeliveryNotFound(f"no delivery {delivery_id} for endpoint {endpoint_id}")
    return row


def get_delivery(
    conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """One delivery with all its attempts."""
    _endpoint(conn, tenant_id, endpoint_id, must_be_enabled=False)
    return _with_attempts(conn, [_delivery_row(conn, tenant_id, endpoint_id, delivery_id)])[0]


def wake_dispatchers(conn: Connection) -> None:
    """Tell the dispatchers (at commit) that a delivery is due now."""
    conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WEBHOOK_NOTIFY_CHANNEL})


def redeliver(
    work: UnitOfWork, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """Send a delivery again, now, with the same webhook-id and a fresh retry schedule."""
    conn = work.connection
    _endpoint(conn, tenant_id, endpoint_id, must_be_enabled=True)
    row = _delivery_row(conn, tenant_id, endpoint_id, delivery_id, lock=True)
    if row["status"] == DeliveryStatus.SENDING:
        raise DeliveryInFlight("the delivery is being attempted right now")
    conn.execute(text(f"UPDATE webhook_deliveries SET {RESTART} WHERE id = :id"), {"id": row["id"]})
    wake_dispatchers(conn)
    return get_delivery(conn, tenant_id, endpoint_id, delivery_id)


def recover_failed(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    since: datetime,
    until: datetime | None = None,
) -> int:
    """Redeliver every failed delivery of events since `since` (and before `until`)."""
    conn = work.connection
    _endpoint(conn, tenant_id, endpoint_id, must_be_enabled=True)
    count = conn.execute(
        text(
            f"""
            UPDATE webhook_deliveries d SET {RESTART}
            WHERE d.tenant_id = :tenant_id AND d.endpoint_id = :endpoint_id
              AND d.status = 'failed' AND d.created_at >= :since
              AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
            """
        ),
        {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint_id,
            "since": _aware(since),
            "until": _aware(until) if until else None,
        },
    ).rowcount
    if count:
        wake_dispatchers(conn)
    return count


def _aware(moment: datetime) -> datetime:
    """A time without a zone is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def send_test_event(
    work: UnitOfWork, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> dict[str, Any]:
    """Queue a signed `webhook.test` event for the endpoint, whatever types it subscribes to."""
    conn = work.connection
    _endpoint(conn, tenant_id, endpoint_id, must_be_enabled=True)
    delivery_id = conn.execute(
        text(
            """
            INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_type, payload)
            VALUES (:tenant_id, :endpoint_id, :event_type,
                    jsonb_build_object('endpoint_id', CAST(:endpoint_id AS text),
                                       'message', 'This is a test event from Tally.'))
            RETURNING id
            """
        ),
        {"tenant_id": tenant_id, "endpoint_id": endpoint_id, "event_type": WEBHOOK_TEST_EVENT},
    ).scalar_one()
    wake_dispatchers(conn)
    return get_delivery(conn, tenant_id, endpoint_id, delivery_id)


def transaction_deliveries(
    conn: Connection, tenant_id: uuid.UUID, transaction_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Every delivery of the events a transaction produced, with all their attempts."""
    rows = (
        conn.execute(
            text(
                f"""
                SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
                JOIN events e ON e.id = d.event_id
                WHERE d.tenant_id = :tenant_id AND e.tenant_id = :tenant_id
                  AND e.transaction_id = :transaction_id
                ORDER BY d.created_at, d.id
                """
            ),
            {"tenant_id": tenant_id, "transaction_id": transaction_id},
        )
        .mappings()
        .all()
    )
    return _with_attempts(conn, rows)


# Per endpoint: its attempts over the window (deliveries created in it, each attempt found
# by ix_webhook_attempts_delivery_id), and its backlog and failures
# (ix_webhook_deliveries_endpoint_id_status).
ENDPOINT_HEALTH = text(
    """
    SELECT w.id, tried.attempts, tried.succeeded, tried.last_failure, backlog.waiting,
           backlog.failed
    FROM webhook_endpoints w
    CROSS JOIN LATERAL (
        SELECT count(a.id) AS attempts,
               count(a.id) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
               max(a.attempted_at) FILTER (WHERE a.status_code IS NULL
                                           OR a.status_code NOT BETWEEN 200 AND 299)
                   AS last_failure
        FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
        WHERE d.endpoint_id = w.id AND d.created_at >= now() - make_interval(secs => :window)
    ) tried
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.status IN ('pending', 'sending')) AS waiting,
               count(*) FILTER (WHERE d.status = 'failed') AS failed
        FROM webhook_deliveries d
        WHERE d.endpoint_id = w.id AND d.status IN ('pending', 'sending', 'failed')
    ) backlog
    WHERE w.tenant_id = :tenant_id AND w.deleted_at IS NULL
      AND (CAST(:endpoint_id AS uuid) IS NULL OR w.id = :endpoint_id)
    """
)


def endpoint_health(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    endpoint_id: uuid.UUID | None = None,
    window_seconds: int = 86400,
) -> dict[str, dict[str, Any]]:
    """Per endpoint id (every one of the tenant's, or just `endpoint_id`): attempts and their
    success rate over the window, the last failed attempt, and how many deliveries wait or
    have failed."""
    health = {}
    for row in conn.execute(
        ENDPOINT_HEALTH,
        {"tenant_id": tenant_id, "window": window_seconds, "endpoint_id": endpoint_id},
    ).mappings():
        attempts = int(row["attempts"])
        health[str(row["id"])] = {
            "attempts": attempts,
            "success_rate": (int(row["succeeded"]) / attempts) if attempts else None,
            "last_failure_at": row["last_failure"],
            "waiting": int(row["waiting"]),
            "failed": int(row["failed"]),
        }
    return health
