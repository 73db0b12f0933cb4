"""Tenants, their API keys and assets, and wallet administration."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from ledger import audit
from ledger.audit import OPERATOR, Actor
from ledger.errors import (
    ApiKeyNotFound,
    AssetAlreadyExists,
    InvalidRequest,
    TenantNotFound,
    WalletClosed,
    WalletNotFound,
)
from ledger.transaction_request import MAX_AMOUNT, UNSTORABLE, check_asset_code
from ledger.vocabulary import AccountStatus, Scope, SystemAccount

API_KEY_PREFIX = "tally_"
# Every change to a key row (a revocation is one) is notified here with the key's id
# (migration 0004), so that API processes drop it from their caches.
KEY_CHANGES_CHANNEL = "tally_api_keys"


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


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def create_tenant(conn: Connection, name: str) -> uuid.UUID:
    """A new tenant's id."""
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("invalid_name", "tenant name must be 1-200 characters", field="name")
    return conn.execute(
        text("INSERT INTO tenants (name) VALUES (:name) RETURNING id"), {"name": name}
    ).scalar_one()


def set_rate_limit(
    conn: Connection, tenant_id: uuid.UUID, per_second: int | None, *, actor: Actor = OPERATOR
) -> None:
    """Set the requests per second each of the tenant's keys may make (None: the default)."""
    if per_second is not None and (
        isinstance(per_second, bool) or not isinstance(per_second, int) or per_second < 1
    ):
        raise InvalidRequest(
            "invalid_rate_limit", "rate limit must be a positive whole number", field="per_second"
        )
    before = conn.execute(
        text("SELECT rate_limit_per_second FROM tenants WHERE id = :t FOR UPDATE"),
        {"t": tenant_id},
    ).first()
    if before is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    conn.execute(
        text("UPDATE tenants SET rate_limit_per_second = :n WHERE id = :t"),
        {"t": tenant_id, "n": per_second},
    )
    audit.record(
        conn,
        tenant_id,
        actor,
        "tenant.rate_limit_changed",
        f"tenant:{tenant_id}",
        {"before": before[0], "after": per_second},
    )


def key_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "prefix": row["prefix"],
        "scope": row["scope"],
        "created_at": row["created_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


KEY_COLUMNS = "id, prefix, scope, created_at, last_used_at, revoked_at"


def issue_api_key(
    conn: Connection, tenant_id: uuid.UUID, scope: Scope | str, *, actor: Actor = OPERATOR
) -> dict[str, Any]:
    """A new API key of `scope`: its view with the key in clear (`api_key`), shown this once
    and stored only as a hash."""
    if scope not in list(Scope):
        raise InvalidRequest(
            "invalid_scope", f"scope must be one of {', '.join(Scope)}", field="scope"
        )
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    text(
                        "INSERT INTO api_keys (tenant_id, key_hash, prefix, scope)"
                        f" VALUES (:tenant_id, :key_hash, :prefix, :scope) RETURNING {KEY_COLUMNS}"
                    ),
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
    audit.record(
        conn,
        tenant_id,
        actor,
        "api_key.created",
        f"api_key:{row['prefix']}",
        {
            "key_id": str(row["id"]),
            "scope": str(scope),
        },
    )
    return {**key_view(row), "api_key": api_key}


def create_api_key(
    conn: Connection, tenant_id: uuid.UUID, *, scope: Scope | str = Scope.WRITE
) -> str:
    """A new API key for the tenant, in clear (see `issue_api_key`)."""
    key: str = issue_api_key(conn, tenant_id, scope)["api_key"]
    return key


def list_api_keys(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's keys (never their secrets), newest first, revoked ones included."""
    rows = conn.execute(
        text(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = :t ORDER BY created_at DESC, id"
        ),
        {"t": tenant_id},
    ).mappings()
    return [key_view(row) for row in rows]


def revoke_key(
    conn: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: Actor
) -> dict[str, Any]:
    """Revoke one of the tenant's keys (at once, in every API process); its view."""
    row = (
        conn.execute(
            text(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                f" WHERE tenant_id = :t AND id = :id RETURNING {KEY_COLUMNS}"
            ),
            {"t": tenant_id, "id": key_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id}")
    audit.record(
        conn,
        tenant_id,
        actor,
        "api_key.revoked",
        f"api_key:{row['prefix']}",
        {
            "key_id": str(key_id),
        },
    )
    return key_view(row)


def revoke_api_key(conn: Connection, api_key_prefix_or_key: str) -> int:
    """Revoke the key with this clear value or prefix (an operator's command, any tenant);
    the number of keys revoked."""
    rows = conn.execute(
        text(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL"
            " AND (key_hash = :key_hash OR prefix = :prefix) RETURNING id, tenant_id, prefix"
        ),
        {"key_hash": hash_api_key(api_key_prefix_or_key), "prefix": api_key_prefix_or_key},
    ).all()
    for key_id, tenant_id, prefix in rows:
        audit.record(
            conn,
            tenant_id,
            OPERATOR,
            "api_key.revoked",
            f"api_key:{prefix}",
            {
                "key_id": str(key_id),
            },
        )
    return len(rows)


def authenticate(conn: Connection, api_key: str) -> Principal | None:
    """The principal of a live API key, or None for an unknown or revoked one."""
    return principal_of_hash(conn, hash_api_key(api_key))


def principal_of_hash(conn: Connection, key_hash: str) -> Principal | None:
    """`authenticate` for a key already hashed, through the one function that may read keys
    before a tenant is known (migration 0005); it stamps the key's last use."""
    row = conn.execute(
        text(
            "SELECT key_id, tenant_id, scope, prefix, rate_limit_per_second"
            " FROM tally_authenticate(:key_hash)"
        ),
        {"key_hash": key_hash},
    ).first()
    if row is None:
        return None
    return Principal(
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        scope=Scope(row.scope),
        prefix=row.prefix,
        rate_limit_per_second=row.rate_limit_per_second,
    )


def create_asset(
    conn: Connection,
    tenant_id: uuid.UUID,
    code: str,
    name: str,
    decimal_places: int,
    *,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Register an asset and its system accounts (@topup, @bonus, @revenue, @adjustments)."""
    check_asset_code(code, "code")
    if not isinstance(decimal_places, int) or not 0 <= decimal_places <= 18:
        raise InvalidRequest(
            "invalid_decimal_places", "decimal_places must be 0..18", field="decimal_places"
        )
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or UNSTORABLE.search(name):
        raise InvalidRequest("invalid_name", "name must be 1-200 characters", field="name")
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    text(
                        "INSERT INTO assets (tenant_id, code, name, decimal_places)"
                        " VALUES (:t, :code, :name, :dp) RETURNING code, name, decimal_places,"
                        " created_at"
                    ),
                    {"t": tenant_id, "code": code, "name": name, "dp": decimal_places},
                )
                .mappings()
                .one()
            )
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.UniqueViolation):
            raise AssetAlreadyExists(f"asset {code} already exists", field="code") from None
        raise
    conn.execute(
        text(
            "INSERT INTO accounts (tenant_id, asset_code, owner, is_system)"
            " SELECT :t, :code, owner, true FROM unnest(CAST(:owners AS text[])) AS owner"
        ),
        {"t": tenant_id, "code": code, "owners": [str(account) for account in SystemAccount]},
    )
    audit.record(
        conn, tenant_id, actor, "asset.created", f"asset:{code}", {"decimal_places": decimal_places}
    )
    return asset_view(row)


def asset_view(row: Any) -> dict[str, Any]:
    return {
        "code": row["code"],
        "name": row["name"],
        "decimal_places": row["decimal_places"],
        "created_at": row["created_at"].isoformat(),
    }


def list_assets(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT code, name, decimal_places, created_at FROM assets"
            " WHERE tenant_id = :t ORDER BY code"
        ),
        {"t": tenant_id},
    ).mappings()
    return [asset_view(row) for row in rows]


def update_wallet(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    actor: Actor = OPERATOR,
    status: str | None = None,
    credit_limit: int | None = None,
    reopen: bool = True,
    reason: str | None = None,
) -> None:
    """Freeze, unfreeze, close a wallet or set its credit limit; bumps its version and
    records who did it, and why, in the audit trail.

    With `reopen=False` (freeze and unfreeze) a closed wallet is refused `wallet_closed`:
    only an admin's explicit status change takes a wallet out of `closed`.
    """
    if status is not None and status not in list(AccountStatus):
        raise InvalidRequest(
            "invalid_status", f"status must be one of {', '.join(AccountStatus)}", field="status"
        )
    if credit_limit is not None and (
        isinstance(credit_limit, bool)
        or not isinstance(credit_limit, int)
        or not 0 <= credit_limit <= MAX_AMOUNT
    ):
        raise InvalidRequest(
            "invalid_credit_limit", f"credit_limit must be 0..{MAX_AMOUNT}", field="credit_limit"
        )
    params = {
        "t": tenant_id,
        "a": asset_code,
        "o": user_id,
        "status": status,
        "credit_limit": credit_limit,
        "reopen": reopen,
    }
    try:
        with conn.begin_nested():
            changed = conn.execute(UPDATE_WALLET, params).mappings().first()
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.CheckViolation):
            raise InvalidRequest(
                "credit_limit_below_balance",
                "the wallet's balance is below the new credit limit",
                field="credit_limit",
            ) from None
        raise
    if changed is None:
        exists = conn.execute(
            text(
                "SELECT status FROM accounts WHERE tenant_id = :t AND asset_code = :a"
                " AND owner = :o AND NOT is_system"
            ),
            params,
        ).scalar()
        if exists == "closed":
            raise WalletClosed(f"the {asset_code} wallet of {user_id!r} is closed")
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    target = f"wallet:{user_id}/{asset_code}"
    details: dict[str, Any] = {"reason": reason} if reason else {}
    if changed["old_status"] != changed["status"]:
        action = STATUS_ACTIONS[(changed["old_status"], changed["status"])]
        audit.record(conn, tenant_id, actor, action, target, details)
    if changed["old_credit_limit"] != changed["credit_limit"]:
        audit.record(
            conn,
            tenant_id,
            actor,
            "wallet.credit_limit_changed",
            target,
            {**details, "before": changed["old_credit_limit"], "after": changed["credit_limit"]},
        )


# (status before, status after) -> the audit action.
STATUS_ACTIONS = {
    ("active", "frozen"): "wallet.frozen",
    ("frozen", "active"): "wallet.unfrozen",
    ("active", "closed"): "wallet.closed",
    ("frozen", "closed"): "wallet.closed",
    ("closed", "active"): "wallet.reopened",
    ("closed", "frozen"): "wallet.reopened",
}

UPDATE_WALLET = text(
    """
    UPDATE accounts AS a
    SET status = coalesce(CAST(:status AS text), a.status),
        credit_limit = coalesce(CAST(:credit_limit AS bigint), a.credit_limit),
        version = a.version + 1, updated_at = now()
    FROM (
        SELECT id, status, credit_limit FROM accounts
        WHERE tenant_id = :t AND asset_code = :a AND owner = :o AND NOT is_system
          AND (:reopen OR status <> 'closed')
        FOR UPDATE
    ) AS old
    WHERE a.id = old.id
    RETURNING old.status AS old_status, old.credit_limit AS old_credit_limit,
              a.status, a.credit_limit
    """
)
