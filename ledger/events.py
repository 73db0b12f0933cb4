"""The outbox: event rows written in the same commit as the status change they announce."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from ledger.vocabulary import EVENT_FOR_STATUS

# The dispatchers LISTEN here; the outbox notifies only when it wrote a delivery.
WEBHOOK_NOTIFY_CHANNEL = "tally_webhooks"

# One statement, one round trip on the hot path: the events, then one webhook delivery per
# event and subscribed, enabled endpoint of its tenant (for a tenant without endpoints, an
# index probe that finds nothing), then a wake-up for the webhook dispatchers.
INSERT_EVENTS = text(
    f"""
    WITH inserted AS (
        INSERT INTO events (tenant_id, type, transaction_id, payload, created_at)
        SELECT e.tenant_id, e.type, e.transaction_id, e.payload, :now
        FROM unnest(
            CAST(:tenant_ids AS uuid[]), CAST(:types AS text[]),
            CAST(:transaction_ids AS uuid[]), CAST(:payloads AS jsonb[])
        ) AS e(tenant_id, type, transaction_id, payload)
        RETURNING id, tenant_id, type
    ), deliveries AS (
        INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                        next_attempt_at, created_at, updated_at)
        SELECT i.tenant_id, w.id, i.id, i.type, :now, :now, :now
        FROM inserted i
        JOIN webhook_endpoints w
          ON w.tenant_id = i.tenant_id AND w.enabled AND i.type = ANY(w.event_types)
        RETURNING 1
    )
    SELECT pg_notify('{WEBHOOK_NOTIFY_CHANNEL}', '') WHERE EXISTS (SELECT 1 FROM deliveries)
    """
)

NOTIFY_CHANNEL = "tally_transactions"
# NOTIFY payloads are capped at 8000 bytes; 36-character ids, comma-separated, fit 200 a time.
NOTIFY_CHUNK = 200


def write_transaction_events(
    conn: Connection, now: Any, finished: Sequence[tuple[uuid.UUID, dict[str, Any]]]
) -> None:
    """Write one event per finished transaction (tenant id, view) and wake long-pollers."""
    if not finished:
        return
    write_events(
        conn,
        now,
        [
            (tenant_id, EVENT_FOR_STATUS[view["status"]], view["id"], view)
            for tenant_id, view in finished
        ],
    )
    notify_finished(conn, [view["id"] for _, view in finished])


def write_events(
    conn: Connection, now: Any, events: Sequence[tuple[uuid.UUID, str, Any, dict[str, Any]]]
) -> None:
    """Write events (tenant id, type, transaction id, payload) and their webhook deliveries."""
    if not events:
        return
    conn.execute(
        INSERT_EVENTS,
        {
            "now": now,
            "tenant_ids": [tenant_id for tenant_id, _, _, _ in events],
            "types": [str(event_type) for _, event_type, _, _ in events],
            "transaction_ids": [str(transaction_id) for _, _, transaction_id, _ in events],
            "payloads": [json.dumps(payload) for _, _, _, payload in events],
        },
    )


def notify_finished(conn: Connection, transaction_ids: Sequence[str]) -> None:
    """Tell listeners (the API's long-poll waiters) which transactions just became terminal.

    NOTIFY is delivered at commit, so a waiter never reads a status that is not yet visible.
    """
    for start in range(0, len(transaction_ids), NOTIFY_CHUNK):
        chunk = ",".join(transaction_ids[start : start + NOTIFY_CHUNK])
        conn.execute(
            text("SELECT pg_notify(:channel, :ids)"), {"channel": NOTIFY_CHANNEL, "ids": chunk}
        )
