"""Assets of a tenant: each has a code, a name and its number of decimal places."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from ledger import audit
from ledger.audit import OPERATOR, Actor
from ledger.db import UnitOfWork
from ledger.errors import AssetAlreadyExists, InvalidRequest
from ledger.system_accounts import lock_system_accounts
from ledger.transaction_request import UNSTORABLE, check_asset_code
from ledger.vocabulary import SystemAccount

MAX_DECIMAL_PLACES = 18
MAX_ASSET_NAME = 200
INSERT_ASSET = text(
    "INSERT INTO assets (tenant_id, code, name, decimal_places)"
    " VALUES (:t, :code, :name, :dp) RETURNING code, name, decimal_places, created_at"
)
# The built-ins and every system account the tenant defined, in key order.
INSERT_SYSTEM_ACCOUNTS = text(
    """
    INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
    SELECT :t, :code, owner, true FROM (
        SELECT unnest(CAST(:builtins AS text[])) AS owner
        UNION SELECT name FROM system_accounts WHERE tenant_id = :t
    ) AS names ORDER BY owner
    """
)
LIST_ASSETS = text(
    "SELECT code, name, decimal_places, created_at FROM assets WHERE tenant_id = :t ORDER BY code"
)


def create_asset(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    code: str,
    name: str,
    decimal_places: int,
    *,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Register an asset and its system accounts: the built-ins (@topup, @bonus, @revenue,
    @adjustments, @payouts, @exchange) and those the tenant defined."""
    check_asset_code(code, "code")
    if not isinstance(decimal_places, int) or not 0 <= decimal_places <= MAX_DECIMAL_PLACES:
        raise InvalidRequest(
            "invalid_decimal_places",
            f"decimal_places must be 0..{MAX_DECIMAL_PLACES}",
            field="decimal_places",
        )
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_ASSET_NAME or UNSTORABLE.search(name):
        raise InvalidRequest(
            "invalid_name", f"name must be 1-{MAX_ASSET_NAME} characters", field="name"
        )
    conn = work.connection
    params = {"t": tenant_id, "code": code, "name": name, "dp": decimal_places}
    try:
        with conn.begin_nested():
            row = conn.execute(INSERT_ASSET, params).mappings().one()
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.UniqueViolation):
            raise AssetAlreadyExists(f"asset {code} already exists", field="code") from None
        raise
    lock_system_accounts(conn, tenant_id)
    conn.execute(
        INSERT_SYSTEM_ACCOUNTS,
        {"t": tenant_id, "code": code, "builtins": [str(account) for account in SystemAccount]},
    )
    audit.append_event(
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
    """The tenant's assets, by code."""
    return [asset_view(row) for row in conn.execute(LIST_ASSETS, {"t": tenant_id}).mappings()]
