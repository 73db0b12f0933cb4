"""API keys: who is calling (a principal), issuing keys shown once, listing, revoking."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from ledger import audit
from ledger.audit import OPERATOR, Actor
from ledger.db import UnitOfWork
from ledger.errors import ApiKeyNotFound, InvalidRequest, TenantNotFound
from ledger.vocabulary import Scope

API_KEY_PREFIX = "tally_"
# What `issue_api_key` makes: the prefix and secrets.token_urlsafe(32), 256 bits in 43
# base64url characters without padding. The last character carries the final 4 bits
# followed by 2 zero bits, so it is one of 16. Anything else is no key: refused unread.
WELL_FORMED_KEY = re.compile(re.escape(API_KEY_PREFIX) + r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
# Every change to a key row (a revocation is one) is notified here with the key's id
# (migration 0004), so that API processes drop it from their caches.
KEY_CHANGES_CHANNEL = "tally_api_keys"
KEY_COLUMNS = "id, prefix, scope, created_at, last_used_at, revoked_at"

# Through the one function that may read keys before a tenant is known (migration 0005);
# it stamps the key's last use.
AUTHENTICATE = text(
    "SELECT key_id, tenant_id, scope, prefix, rate_limit_per_second"
    " FROM tally_authenticate(:key_hash)"
)
INSERT_KEY = text(
    "INSERT INTO api_keys (tenant_id, key_hash, prefix, scope)"
    f" VALUES (:tenant_id, :key_hash, :prefix, :scope) RETURNING {KEY_COLUMNS}"
)
REVOKE_BY_ID = text(
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
    f" WHERE tenant_id = :t AND id = :id RETURNING {KEY_COLUMNS}"
)
REVOKE_MATCHING = text(
    "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL"
    " AND (key_hash = :key_hash OR prefix = :prefix) RETURNING id, tenant_id, prefix"
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant an API key belongs to, the key, and its scope."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scope: Scope
    prefix: str = ""
    # The tenant's per-key limit; None: the deployment's default.
    rate_limit_per_second: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == Scope.ADMIN

    @property
    def actor(self) -> Actor:
        return Actor(f"key:{self.prefix}", self.key_id)


def principal_from_row(row: Any) -> Principal:
    """The principal of a row naming key_id, tenant_id, scope, prefix, rate_limit_per_second."""
    return Principal(
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        scope=Scope(row.scope),
        prefix=row.prefix,
        rate_limit_per_second=row.rate_limit_per_second,
    )


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def well_formed_api_key(api_key: str) -> bool:
    """Whether the text has the exact shape of an issued key (checked before any lookup)."""
    return WELL_FORMED_KEY.fullmatch(api_key) is not None


def authenticate(work: UnitOfWork, api_key: str) -> Principal | None:
    """The principal of a live API key, or None for an unknown, revoked or malformed one
    (a malformed one without a query)."""
    if not well_formed_api_key(api_key):
        return None
    return authenticate_hash(work, hash_api_key(api_key))


def authenticate_hash(work: UnitOfWork, key_hash: str) -> Principal | None:
    """`authenticate` for a key already hashed; stamps the key's last use."""
    row = work.connection.execute(AUTHENTICATE, {"key_hash": key_hash}).first()
    return principal_from_row(row) if row is not None else None


def key_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "prefix": row["prefix"],
        "scope": row["scope"],
        "created_at": row["created_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


def issue_api_key(
    work: UnitOfWork, tenant_id: uuid.UUID, scope: Scope | str, *, actor: Actor = OPERATOR
) -> dict[str, Any]:
    """A new API key of `scope`: its view with the key in clear (`api_key`), shown this once
    and stored only as a hash."""
    if scope not in list(Scope):
        raise InvalidRequest(
            "invalid_scope", f"scope must be one of {', '.join(Scope)}", field="scope"
        )
    conn = work.connection
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    INSERT_KEY,
                    {
                        "tenant_id": tenant_id,
                        "key_hash": hash_api_key(api_key),
                        "prefix": api_key[:12],
                        "scope": str(scope),
                    },
                )
                .mappings()
                .one()
            )
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.ForeignKeyViolation):
            raise TenantNotFound(f"no tenant {tenant_id}") from None
        raise
    audit.append_event(
        conn,
        tenant_id,
        actor,
        "api_key.created",
        f"api_key:{row['prefix']}",
        {"key_id": str(row["id"]), "scope": str(scope)},
    )
    return {**key_view(row), "api_key": api_key}


def list_api_keys(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's keys (never their secrets), newest first, revoked ones included."""
    rows = conn.execute(
        text(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = :t ORDER BY created_at DESC, id"
        ),
        {"t": tenant_id},
    ).mappings()
    return [key_view(row) for row in rows]


def revoke_api_key(
    work: UnitOfWork, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: Actor
) -> dict[str, Any]:
    """Revoke one of the tenant's keys (at once, in every API process); its view."""
    row = work.connection.execute(REVOKE_BY_ID, {"t": tenant_id, "id": key_id}).mappings().first()
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id}")
    audit.append_event(
        work.connection,
        tenant_id,
        actor,
        "api_key.revoked",
        f"api_key:{row['prefix']}",
        {"key_id": str(key_id)},
    )
    return key_view(row)


def revoke_api_keys_matching(work: UnitOfWork, key_or_prefix: str) -> int:
    """Revoke the key with this clear value or prefix (an operator's command, any tenant);
    the number of keys revoked."""
    rows = work.connection.execute(
        REVOKE_MATCHING, {"key_hash": hash_api_key(key_or_prefix), "prefix": key_or_prefix}
    ).all()
    for key_id, tenant_id, prefix in rows:
        audit.append_event(
            work.connection,
            tenant_id,
            OPERATOR,
            "api_key.revoked",
            f"api_key:{prefix}",
            {"key_id": str(key_id)},
        )
    return len(rows)
