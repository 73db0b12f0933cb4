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

from ledger.errors import (
    AssetAlreadyExists,
    InvalidRequest,
    TenantNotFound,
    WalletClosed,
    WalletNotFound,
)
from ledger.transaction_request import MAX_AMOUNT, UNSTORABLE, check_asset_code
from ledger.vocabulary import AccountStatus, SystemAccount

API_KEY_PREFIX = "tally_"
# Every change to a key row (a revocation is one) is notified here with the key's id
# (migration 0004), so that API processes drop it from their caches.
KEY_CHANGES_CHANNEL = "tally_api_keys"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant an API key belongs to, and whether the key is an admin's."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    is_admin: bool


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_tenant(conn: Connection, name: str) -> uuid.UUID:
    """A new tenant's id."""
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("invalid_name", "tenant name must be 1-200 characters", field="name")
    return conn.execute(
        text("INSERT INTO tenants (name) VALUES (:name) RETURNING id"), {"name": name}
    ).scalar_one()


def create_api_key(conn: Connection, tenant_id: uuid.UUID, *, is_admin: bool = False) -> str:
    """A new API key for the tenant: returned in clear this once, stored only as a hash."""
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    "INSERT INTO api_keys (tenant_id, key_hash, prefix, is_admin)"
                    " VALUES (:tenant_id, :key_hash, :prefix, :is_admin)"
                ),
                {
                    "tenant_id": tenant_id,
                    "key_hash": hash_api_key(api_key),
                    "prefix": api_key[:12],
                    "is_admin": is_admin,
                },
            )
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.ForeignKeyViolation):
            raise TenantNotFound(f"no tenant {tenant_id}") from None
        raise
    return api_key


def revoke_api_key(conn: Connection, api_key_prefix_or_key: str) -> int:
    """Revoke the key with this clear value or prefix; the number of keys revoked."""
    return conn.execute(
        text(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL"
            " AND (key_hash = :key_hash OR prefix = :prefix)"
        ),
        {"key_hash": hash_api_key(api_key_prefix_or_key), "prefix": api_key_prefix_or_key},
    ).rowcount


def authenticate(conn: Connection, api_key: str) -> Principal | None:
    """The principal of a live API key, or None for an unknown or revoked one."""
    return principal_of_hash(conn, hash_api_key(api_key))


def principal_of_hash(conn: Connection, key_hash: str) -> Principal | None:
    """`authenticate` for a key already hashed."""
    row = conn.execute(
        text(
            "SELECT id, tenant_id, is_admin FROM api_keys"
            " WHERE key_hash = :key_hash AND revoked_at IS NULL"
        ),
        {"key_hash": key_hash},
    ).first()
    if row is None:
        return None
    return Principal(tenant_id=row.tenant_id, key_id=row.id, is_admin=row.is_admin)


def create_asset(
    conn: Connection, tenant_id: uuid.UUID, code: str, name: str, decimal_places: int
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
    status: str | None = None,
    credit_limit: int | None = None,
    reopen: bool = True,
) -> None:
    """Freeze, unfreeze, close a wallet or set its credit limit; bumps its version.

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
            result = conn.execute(UPDATE_WALLET, params)
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.CheckViolation):
            raise InvalidRequest(
                "credit_limit_below_balance",
                "the wallet's balance is below the new credit limit",
                field="credit_limit",
            ) from None
        raise
    if result.rowcount == 0:
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


UPDATE_WALLET = text(
    """
    UPDATE accounts
    SET status = coalesce(CAST(:status AS text), status),
        credit_limit = coalesce(CAST(:credit_limit AS bigint), credit_limit),
        version = version + 1, updated_at = now()
    WHERE tenant_id = :t AND asset_code = :a AND owner = :o AND NOT is_system
      AND (:reopen OR status <> 'closed')
    """
)
