"""System accounts a tenant defines beside the built-ins, their balances and their journals.

A system account is a name (`@fees`): one `accounts` row per asset carries its balance, as
for the built-ins (ledger/vocabulary.py `SystemAccount`). Defining a name creates its rows
for every asset the tenant has; registering an asset later creates them too
(ledger/assets.py). Both take the tenant's system-account lock first, so a definition and
a new asset committing side by side cannot both miss the other's row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import (
    AssetNotFound,
    InvalidRequest,
    SystemAccountExists,
    SystemAccountNotFound,
)
from ledger.known_names import KnownNames
from ledger.ledger_time import balances_as_of
from ledger.pagination import page_size
from ledger.queries import account_history, cursor_version
from ledger.transaction_request import UNSTORABLE
from ledger.vocabulary import SYSTEM_ACCOUNT_NAME, SystemAccount

MAX_DESCRIPTION = 500
NAME = re.compile(SYSTEM_ACCOUNT_NAME)
BUILTINS = frozenset(str(account) for account in SystemAccount)
# What the listing says of each built-in (a defined account shows its own description).
BUILTIN_DESCRIPTIONS = {
    SystemAccount.TOPUP: "Built-in: money entering wallets by top-ups.",
    SystemAccount.BONUS: "Built-in: bonuses granted to wallets.",
    SystemAccount.REVENUE: "Built-in: what wallets spend; refunds return from it.",
    SystemAccount.ADJUSTMENTS: "Built-in: the other side of adjustments.",
    SystemAccount.PAYOUTS: "Built-in: money leaving wallets by payouts.",
    SystemAccount.EXCHANGE: "Built-in: the other side of exchanges between assets.",
}

LOCK_SYSTEM_ACCOUNTS = text(
    "SELECT pg_advisory_xact_lock(hashtext('system_accounts:' || CAST(:t AS text)))"
)
INSERT_DEFINITION = text(
    """
    INSERT INTO system_accounts (tenant_id, name, description) VALUES (:t, :name, :description)
    ON CONFLICT (tenant_id, name) DO NOTHING
    RETURNING name, description, created_at
    """
)
# One row per asset, in key order (as every writer of accounts inserts).
INSERT_ACCOUNTS_OF_NAME = text(
    """
    INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
    SELECT :t, code, :name, true FROM assets WHERE tenant_id = :t ORDER BY code
    ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING
    """
)
LIST = text(
    """
    SELECT a.id, a.owner AS name, a.asset_code, a.balance, d.description
    FROM accounts a
    LEFT JOIN system_accounts d ON d.tenant_id = a.tenant_id AND d.name = a.owner
    WHERE a.tenant_id = :t AND a.is_system
      AND (CAST(:asset_code AS text) IS NULL OR a.asset_code = :asset_code)
    ORDER BY a.asset_code, a.owner
    """
)
ASSET_EXISTS = text("SELECT EXISTS (SELECT 1 FROM assets WHERE tenant_id = :t AND code = :code)")
DEFINED = text("SELECT name FROM system_accounts WHERE tenant_id = :t AND name = ANY(:names)")
ACCOUNT_ID = text(
    "SELECT id FROM accounts"
    " WHERE tenant_id = :t AND asset_code = :asset_code AND owner = :name AND is_system"
)


def lock_system_accounts(conn: Connection, tenant_id: uuid.UUID) -> None:
    """Serialise the tenant's definitions and asset registrations until the commit: each
    then sees what the other committed (READ COMMITTED reads afresh per statement)."""
    conn.execute(LOCK_SYSTEM_ACCOUNTS, {"t": tenant_id})


def check_system_account_name(name: object) -> str:
    """The name if it is `@` and 1-32 of [a-z0-9_]; InvalidRequest otherwise."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise InvalidRequest(
            "invalid_system_account_name",
            "a system account's name is @ and 1-32 of a-z, 0-9 and _",
            field="name",
        )
    return name


def _description(description: object) -> str | None:
    if description is None:
        return None
    if (
        not isinstance(description, str)
        or len(description) > MAX_DESCRIPTION
        or UNSTORABLE.search(description)
    ):
        raise InvalidRequest(
            "invalid_description",
            f"description must be at most {MAX_DESCRIPTION} characters, without NUL",
            field="description",
        )
    return description


def define_system_account(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    name: str,
    description: str | None = None,
    *,
    actor: Actor,
) -> dict[str, Any]:
    """Define a system account and create its account in every asset of the tenant."""
    name = check_system_account_name(name)
    description = _description(description)
    if name in BUILTINS:
        raise SystemAccountExists(f"{name} is a built-in system account", field="name")
    conn = work.connection
    lock_system_accounts(conn, tenant_id)
    params = {"t": tenant_id, "name": name, "description": description}
    row = conn.execute(INSERT_DEFINITION, params).mappings().first()
    if row is None:
        raise SystemAccountExists(f"system account {name} already exists", field="name")
    conn.execute(INSERT_ACCOUNTS_OF_NAME, params)
    audit.append_event(
        conn,
        tenant_id,
        actor,
        "system_account.created",
        f"system_account:{name}",
        {"description": description},
    )
    return {
        "name": row["name"],
        "description": row["description"],
        "created_at": row["created_at"].isoformat(),
    }


def list_system_accounts(
    conn: Connection,
    tenant_id: uuid.UUID,
    asset_code: str | None = None,
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every system account (built-in and defined) with its balance, by asset then name;
    only those of `asset_code` when given (AssetNotFound if the tenant has no such asset).
    With `as_of`, each balance counts the entries effective by then (and recorded by
    `known_at`, if given; ledger/ledger_time.py)."""
    rows = conn.execute(LIST, {"t": tenant_id, "asset_code": asset_code}).mappings().all()
    balances: dict[int, int] = {}
    if as_of is not None:
        balances = balances_as_of(conn, [row["id"] for row in rows], as_of, known_at)
    # An asset always has the built-ins' rows: only an empty answer may be an unknown asset.
    if (
        not rows
        and asset_code is not None
        and not conn.execute(ASSET_EXISTS, {"t": tenant_id, "code": asset_code}).scalar_one()
    ):
        raise AssetNotFound(f"unknown asset {asset_code}", field="asset_code")
    return [
        {
            "name": row["name"],
            "builtin": row["name"] in BUILTINS,
            "description": BUILTIN_DESCRIPTIONS.get(row["name"], row["description"]),
            "asset_code": row["asset_code"],
            "balance": balances.get(row["id"], row["balance"]),
            "as_of": as_of.isoformat() if as_of is not None else None,
            "known_at": known_at.isoformat() if known_at is not None else None,
        }
        for row in rows
    ]


# Defined system accounts are never removed: each process remembers those it has seen.
DEFINED_SEEN = KnownNames()


def known_system_accounts(conn: Connection, tenant_id: uuid.UUID, names: Iterable[str]) -> set[str]:
    """Which of `names` are the tenant's system accounts: every built-in, and the defined
    ones (one query, made only for a well-formed name that is not a built-in and that this
    process has not seen defined before)."""
    asked = set(names)
    known = asked & BUILTINS
    others = {name for name in asked - known if NAME.fullmatch(name)}
    unseen = DEFINED_SEEN.unseen(tenant_id, others)
    known |= others - unseen
    if unseen:
        found = set(conn.execute(DEFINED, {"t": tenant_id, "names": sorted(unseen)}).scalars())
        DEFINED_SEEN.remember(tenant_id, found)
        known |= found
    return known


def system_account_history(
    conn: Connection,
    tenant_id: uuid.UUID,
    name: str,
    asset_code: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A system account's journal in one asset, newest first, in keyset pages as a
    wallet's (ledger/queries.py `wallet_history`)."""
    name = check_system_account_name(name)
    before = cursor_version(cursor) if cursor else None
    if not known_system_accounts(conn, tenant_id, [name]):
        raise SystemAccountNotFound(f"no system account {name}", field="name")
    account_id = conn.execute(
        ACCOUNT_ID, {"t": tenant_id, "asset_code": asset_code, "name": name}
    ).scalar()
    if account_id is None:
        raise AssetNotFound(f"unknown asset {asset_code}", field="asset_code")
    return account_history(conn, int(account_id), limit=page_size(limit), before=before)
