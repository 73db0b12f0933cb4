"""The audit trail: who froze a wallet, changed a limit, rotated a secret, revoked a key.

Each administrative use case records its event in its own transaction, so an action and
its audit event commit together or not at all. The table is append-only (a trigger).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.pagination import decode_cursor, encode_cursor


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key (named by its prefix and scope) or an operator's command."""

    label: str
    key_id: uuid.UUID | None = None


# An operator at the command line (`tally keys ...`, `tally tenants ...`).
OPERATOR = Actor("operator:cli")
# The webhook dispatcher, disabling an endpoint that answered 410 Gone.
DISPATCHER = Actor("system:webhook-dispatcher")

INSERT_EVENT = text(
    """
    INSERT INTO audit_events (tenant_id, actor_key_id, actor, action, target, details)
    VALUES (:tenant_id, :key_id, :actor, :action, :target, CAST(:details AS jsonb))
    """
)


def append_event(
    conn: Connection,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event in the caller's transaction."""
    conn.execute(
        INSERT_EVENT,
        {
            "tenant_id": tenant_id,
            "key_id": actor.key_id,
            "actor": actor.label,
            "action": action,
            "target": target,
            "details": json.dumps(details or {}),
        },
    )


def _view(row: Any) -> dict[str, Any]:
    occurred_at: datetime = row["occurred_at"]
    return {
        "id": str(row["id"]),
        "occurred_at": occurred_at.isoformat(),
        "actor": row["actor"],
        "actor_key_id": str(row["actor_key_id"]) if row["actor_key_id"] else None,
        "action": row["action"],
        "target": row["target"],
        "details": row["details"],
    }


def list_events(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    action: str | None = None,
) -> dict[str, Any]:
    """The tenant's audit events, newest first, a page at a time (keyset on the id)."""
    rows = (
        conn.execute(
            text(
                """
                SELECT id, occurred_at, actor, actor_key_id, action, target, details
                FROM audit_events
                WHERE tenant_id = :tenant_id
                  AND (CAST(:before AS bigint) IS NULL OR id < :before)
                  AND (CAST(:action AS text) IS NULL OR action = :action)
                ORDER BY id DESC LIMIT :limit
                """
            ),
            {
                "tenant_id": tenant_id,
                "before": decode_cursor(cursor, int) if cursor else None,
                "action": action,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    page = rows[:limit]
    return {
        "events": [_view(row) for row in page],
        "next_cursor": encode_cursor(str(page[-1]["id"])) if len(rows) > limit else None,
    }
