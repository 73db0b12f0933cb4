"""Webhook endpoints of a tenant: register, list, change, delete, rotate the secret; and,
for the operator, sealing every secret again under a new key."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger import audit
from ledger.audit import DISPATCHER, OPERATOR, Actor
from ledger.db import UnitOfWork
from ledger.errors import InvalidRequest
from ledger.transaction_request import UNSTORABLE
from ledger.views import iso
from ledger.vocabulary import EventType
from ledger.webhooks.errors import EndpointNotFound, TooManyEndpoints
from ledger.webhooks.secrets import SecretBox, SecretUnreadable
from ledger.webhooks.signing import generate_secret
from ledger.webhooks.targets import check_url

# Every finished batch joins its events against the tenant's endpoints: keep the set small.
MAX_ENDPOINTS_PER_TENANT = 50
MAX_DESCRIPTION = 500
MAX_OVERLAP_SECONDS = 7 * 86_400
DISABLED_BY_API = "disabled through the API"
DELETED = "deleted"
UPDATABLE = frozenset({"url", "event_types", "description", "enabled"})

COLUMNS = """
    id, url, description, event_types, enabled, disabled_reason,
    previous_secret_expires_at, created_at, updated_at
"""
FAIL_PENDING = text(
    """
    UPDATE webhook_deliveries
    SET status = 'failed', last_error = :reason, updated_at = now()
    WHERE endpoint_id = :endpoint_id AND status = 'pending'
    """
)


def endpoint_view(row: RowMapping) -> dict[str, Any]:
    """An endpoint as the API shows it; the secret is never part of it."""
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "previous_secret_expires_at": iso(row["previous_secret_expires_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _event_types(event_types: Iterable[str] | None) -> list[str]:
    if event_types is None:
        return [str(t) for t in EventType]
    chosen = list(dict.fromkeys(event_types))
    unknown = [t for t in chosen if t not in list(EventType)]
    if unknown or not chosen:
        raise InvalidRequest(
            "invalid_event_types",
            f"event_types must be one or more of {', '.join(EventType)}",
            field="event_types",
        )
    return chosen


def _description(description: str | None) -> str | None:
    if description is not None and (
        len(description) > MAX_DESCRIPTION or UNSTORABLE.search(description)
    ):
        raise InvalidRequest(
            "invalid_description",
            f"description must be at most {MAX_DESCRIPTION} storable characters",
            field="description",
        )
    return description or None


def _endpoint_row(
    conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> RowMapping:
    """One endpoint row of the tenant, locked for a change if asked, or EndpointNotFound."""
    # NO KEY UPDATE: posting batches insert deliveries referencing this row (taking KEY
    # SHARE) while they hold hot account locks; they must not wait.
    lock_clause = " FOR NO KEY UPDATE" if lock else ""
    row = (
        conn.execute(
            text(
                f"SELECT {COLUMNS} FROM webhook_endpoints"
                " WHERE tenant_id = :tenant_id AND id = :id AND deleted_at IS NULL" + lock_clause
            ),
            {"tenant_id": tenant_id, "id": endpoint_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return row


def create_endpoint(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    *,
    url: str,
    event_types: Iterable[str] | None = None,
    description: str | None = None,
    box: SecretBox,
    allow_private: bool = False,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Register an endpoint; the answer carries its secret, shown this once (the table
    keeps it sealed in `box`)."""
    conn = work.connection
    url = check_url(url, allow_private=allow_private).url
    types = _event_types(event_types)
    description = _description(description)
    # One creator per tenant at a time, so two concurrent creates cannot pass the cap.
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || :tenant_id))"),
        {"tenant_id": str(tenant_id)},
    )
    count = conn.execute(
        text(
            "SELECT count(*) FROM webhook_endpoints"
            " WHERE tenant_id = :tenant_id AND deleted_at IS NULL"
        ),
        {"tenant_id": tenant_id},
    ).scalar_one()
    if count >= MAX_ENDPOINTS_PER_TENANT:
        raise TooManyEndpoints(f"a tenant can have at most {MAX_ENDPOINTS_PER_TENANT} endpoints")
    secret = generate_secret()
    row = (
        conn.execute(
            text(
                f"""
                INSERT INTO webhook_endpoints
                    (tenant_id, url, description, event_types, secret_sealed)
                VALUES (:tenant_id, :url, :description, :event_types, :secret_sealed)
                RETURNING {COLUMNS}
                """
            ),
            {
                "tenant_id": tenant_id,
                "url": url,
                "description": description,
                "event_types": types,
                "secret_sealed": box.seal(secret),
            },
        )
        .mappings()
        .one()
    )
    audit.append_event(
        conn, tenant_id, actor, "webhook_endpoint.created", _target(row["id"]), {"url": url}
    )
    return {**endpoint_view(row), "secret": secret}


def _target(endpoint_id: uuid.UUID) -> str:
    return f"webhook_endpoint:{endpoint_id}"


def list_endpoints(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's endpoints, oldest first."""
    rows = conn.execute(
        text(
            f"SELECT {COLUMNS} FROM webhook_endpoints"
            " WHERE tenant_id = :tenant_id AND deleted_at IS NULL ORDER BY created_at, id"
        ),
        {"tenant_id": tenant_id},
    ).mappings()
    return [endpoint_view(row) for row in rows]


def get_endpoint(conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any]:
    """One endpoint of the tenant, or EndpointNotFound."""
    return endpoint_view(_endpoint_row(conn, tenant_id, endpoint_id))


def update_endpoint(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    changes: Mapping[str, Any],
    *,
    allow_private: bool = False,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Change an endpoint's URL, event types, description or enabled flag."""
    conn = work.connection
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise InvalidRequest("invalid_request", f"cannot change {', '.join(sorted(unknown))}")
    url: str | None = None
    if "url" in changes:
        # DNS before the row lock: a slow resolver must not hold the lock.
        url = check_url(changes["url"], allow_private=allow_private).url
    current = _endpoint_row(conn, tenant_id, endpoint_id, lock=True)
    url = url or current["url"]
    types = _event_types(changes["event_types"]) if "event_types" in changes else None
    description = (
        _description(changes["description"]) if "description" in changes else current["description"]
    )
    enabled = changes.get("enabled", current["enabled"])
    if enabled:
        reason = None
    else:
        reason = DISABLED_BY_API if current["enabled"] else current["disabled_reason"]
    row = (
        conn.execute(
            text(
                f"""
                UPDATE webhook_endpoints
                SET url = :url, description = :description,
                    event_types = coalesce(CAST(:event_types AS text[]), event_types),
                    enabled = :enabled, disabled_reason = :reason, updated_at = now()
                WHERE id = :id
                RETURNING {COLUMNS}
                """
            ),
            {
                "id": endpoint_id,
                "url": url,
                "description": description,
                "event_types": types,
                "enabled": enabled,
                "reason": reason,
            },
        )
        .mappings()
        .one()
    )
    if current["enabled"] and not enabled:
        conn.execute(FAIL_PENDING, {"endpoint_id": endpoint_id, "reason": "endpoint disabled"})
    _audit_update(conn, tenant_id, actor, endpoint_id, current, row)
    return endpoint_view(row)


def _audit_update(
    conn: Connection,
    tenant_id: uuid.UUID,
    actor: Actor,
    endpoint_id: uuid.UUID,
    before: RowMapping,
    after: RowMapping,
) -> None:
    """One event per kind of change: a repointed URL or new event types, and enabling or
    disabling, are told apart in the trail."""
    changed = {
        field: {"before": before[field], "after": after[field]}
        for field in ("url", "event_types", "description")
        if before[field] != after[field]
    }
    if changed:
        audit.append_event(
            conn, tenant_id, actor, "webhook_endpoint.updated", _target(endpoint_id), changed
        )
    if before["enabled"] != after["enabled"]:
        action = "webhook_endpoint.enabled" if after["enabled"] else "webhook_endpoint.disabled"
        audit.append_event(conn, tenant_id, actor, action, _target(endpoint_id))


def delete_endpoint(
    work: UnitOfWork, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *, actor: Actor = OPERATOR
) -> None:
    """Delete an endpoint: nothing more is sent to it and it disappears from the API."""
    conn = work.connection
    _endpoint_row(conn, tenant_id, endpoint_id, lock=True)
    conn.execute(
        text(
            """
            UPDATE webhook_endpoints
            SET deleted_at = now(), enabled = false, disabled_reason = :reason, updated_at = now()
            WHERE id = :id
            """
        ),
        {"id": endpoint_id, "reason": DELETED},
    )
    conn.execute(FAIL_PENDING, {"endpoint_id": endpoint_id, "reason": "endpoint deleted"})
    audit.append_event(conn, tenant_id, actor, "webhook_endpoint.deleted", _target(endpoint_id))


def rotate_secret(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    overlap_seconds: int,
    box: SecretBox,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Issue a new secret (kept sealed in `box`); the old one keeps signing alongside it
    for `overlap_seconds`."""
    conn = work.connection
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise InvalidRequest(
            "invalid_overlap",
            f"overlap_seconds must be between 0 and {MAX_OVERLAP_SECONDS}",
            field="overlap_seconds",
        )
    _endpoint_row(conn, tenant_id, endpoint_id, lock=True)
    secret = generate_secret()
    row = (
        conn.execute(
            text(
                f"""
                UPDATE webhook_endpoints
                SET previous_secret_sealed = CASE WHEN CAST(:overlap AS integer) > 0
                        THEN secret_sealed END,
                    previous_secret_expires_at = CASE WHEN CAST(:overlap AS integer) > 0
                        THEN now() + make_interval(secs => :overlap) END,
                    secret_sealed = :secret_sealed, updated_at = now()
                WHERE id = :id
                RETURNING {COLUMNS}
                """
            ),
            {"id": endpoint_id, "secret_sealed": box.seal(secret), "overlap": overlap_seconds},
        )
        .mappings()
        .one()
    )
    audit.append_event(
        conn,
        tenant_id,
        actor,
        "webhook_endpoint.secret_rotated",
        _target(endpoint_id),
        {"overlap_seconds": overlap_seconds},
    )
    return {**endpoint_view(row), "secret": secret}


def disable_gone_endpoint(conn: Connection, endpoint_id: uuid.UUID, reason: str) -> None:
    """The receiver said 410 Gone: stop sending, and fail what was waiting for it."""
    disabled = conn.execute(
        text(
            """
            UPDATE webhook_endpoints
            SET enabled = false, disabled_reason = :reason, updated_at = now()
            WHERE id = :id AND enabled
            RETURNING tenant_id
            """
        ),
        {"id": endpoint_id, "reason": reason},
    ).scalar()
    conn.execute(FAIL_PENDING, {"endpoint_id": endpoint_id, "reason": "endpoint disabled"})
    if disabled is not None:
        audit.append_event(
            conn,
            disabled,
            DISPATCHER,
            "webhook_endpoint.disabled",
            _target(endpoint_id),
            {"reason": reason},
        )


@dataclass(frozen=True)
class ResealReport:
    """What `reseal_secrets` did: how many endpoints it sealed again, which it could not open."""

    resealed: int
    unreadable: list[uuid.UUID]


def reseal_secrets(work: UnitOfWork, box: SecretBox) -> ResealReport:
    """Seal every endpoint's secrets (deleted endpoints' too) again under the box's first key,
    so that older keys can be retired; endpoints no key opens are left as they are."""
    conn = work.connection
    rows = conn.execute(
        text(
            "SELECT id, secret_sealed, previous_secret_sealed FROM webhook_endpoints"
            " ORDER BY id FOR UPDATE"
        )
    ).all()
    resealed, unreadable = 0, []
    for endpoint_id, sealed, previous in rows:
        try:
            new_sealed = box.reseal(sealed)
            new_previous = box.reseal(previous) if previous is not None else None
        except SecretUnreadable:
            unreadable.append(endpoint_id)
            continue
        conn.execute(
            text(
                "UPDATE webhook_endpoints"
                " SET secret_sealed = :sealed, previous_secret_sealed = :previous WHERE id = :id"
            ),
            {"id": endpoint_id, "sealed": new_sealed, "previous": new_previous},
        )
        resealed += 1
    return ResealReport(resealed, unreadable)
