"""Read-side queries: transactions, balances and account history. Every query names its tenant
(or an account id found within one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger.errors import WalletNotFound
from ledger.ledger_time import balance_as_of
from ledger.pagination import decode_cursor, encode_cursor, page_size
from ledger.rules import available_balance
from ledger.views import transaction_view
from ledger.vocabulary import TransactionStatus, TransactionType

# Account versions are bigints: a larger cursor would fail in the database, not here.
MAX_VERSION = 2**63 - 1


def transaction_row(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    transaction_id: uuid.UUID | None = None,
    reference_id: str | None = None,
) -> RowMapping | None:
    """The raw transaction row by id or by reference id, within one tenant."""
    if transaction_id is not None:
        query = "SELECT * FROM transactions WHERE tenant_id = :tenant_id AND id = :key"
        key: object = transaction_id
    else:
        query = "SELECT * FROM transactions WHERE tenant_id = :tenant_id AND reference_id = :key"
        key = reference_id
    return conn.execute(text(query), {"tenant_id": tenant_id, "key": key}).mappings().first()


PerTransaction = dict[uuid.UUID, dict[tuple[str, str], int]]
BALANCES_AFTER = text(
    """
    SELECT e.transaction_id, a.asset_code, a.owner, e.balance_after, e.account_version
    FROM entries e JOIN accounts a ON a.id = e.account_id
    WHERE e.transaction_id = ANY(:ids) AND NOT a.is_system
    ORDER BY e.id
    """
)


def balances_after_many(
    conn: Connection, transaction_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[tuple[str, str], int]]:
    """Per transaction: (asset, wallet owner) -> balance right after it, for the wallets it
    moved (after its last entry on a wallet, for a journal that moves one several times)."""
    return wallets_after_many(conn, transaction_ids)[0]


def wallets_after_many(
    conn: Connection, transaction_ids: list[uuid.UUID]
) -> tuple[
    dict[uuid.UUID, dict[tuple[str, str], int]], dict[uuid.UUID, dict[tuple[str, str], int]]
]:
    """Per transaction: the balances after it (as `balances_after_many`), and the versions
    (sequences) it left the same wallets at."""
    after: PerTransaction = {}
    versions: PerTransaction = {}
    rows = conn.execute(BALANCES_AFTER, {"ids": transaction_ids})
    for transaction_id, asset, owner, balance, version in rows:
        after.setdefault(transaction_id, {})[(asset, owner)] = balance
        versions.setdefault(transaction_id, {})[(asset, owner)] = version
    return after, versions


def balances_after(conn: Connection, transaction_id: uuid.UUID) -> dict[tuple[str, str], int]:
    """(asset, wallet owner) -> balance right after this transaction, for the wallets it
    moved."""
    return balances_after_many(conn, [transaction_id]).get(transaction_id, {})


def get_transaction(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    transaction_id: uuid.UUID | None = None,
    reference_id: str | None = None,
) -> dict[str, Any] | None:
    """The transaction as the status endpoint shows it, or None outside this tenant."""
    row = transaction_row(conn, tenant_id, transaction_id=transaction_id, reference_id=reference_id)
    return transaction_views(conn, [row])[0] if row is not None else None


HOLDS = text("SELECT * FROM holds WHERE transaction_id = ANY(:ids)")


def transaction_views(conn: Connection, rows: Sequence[RowMapping]) -> list[dict[str, Any]]:
    """Render transaction rows with what else they show: the balances an applied one left,
    and the state of an applied hold."""
    applied = [row["id"] for row in rows if row["status"] == TransactionStatus.APPLIED]
    after, versions = wallets_after_many(conn, applied) if applied else ({}, {})
    hold_ids = [
        row["id"]
        for row in rows
        if row["type"] == TransactionType.HOLD and row["status"] == TransactionStatus.APPLIED
    ]
    holds: dict[uuid.UUID, RowMapping] = {}
    if hold_ids:
        holds = {
            hold["transaction_id"]: hold
            for hold in conn.execute(HOLDS, {"ids": hold_ids}).mappings()
        }
    return [
        transaction_view(
            row, after.get(row["id"], {}), holds.get(row["id"]), versions.get(row["id"])
        )
        for row in rows
    ]


def get_balance(
    conn: Connection, tenant_id: uuid.UUID, user_id: str, asset_code: str
) -> dict[str, Any]:
    """A wallet's balance, holds and spendable amount, all in minor units."""
    row = (
        conn.execute(
            text(
                """
                SELECT a.owner, a.asset_code, a.balance, a.pending, a.credit_limit, a.status,
                       a.version, s.decimal_places
                FROM accounts a JOIN assets s
                  ON s.tenant_id = a.tenant_id AND s.code = a.asset_code
                WHERE a.tenant_id = :tenant_id AND a.asset_code = :asset_code
                  AND a.owner = :owner AND NOT a.is_system
                """
            ),
            {"tenant_id": tenant_id, "asset_code": asset_code, "owner": user_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    return {
        "user_id": row["owner"],
        "asset_code": row["asset_code"],
        "balance": row["balance"],
        "pending": row["pending"],
        "credit_limit": row["credit_limit"],
        "available": available_balance(row["balance"], row["pending"], row["credit_limit"]),
        "decimal_places": row["decimal_places"],
        "status": row["status"],
        "version": row["version"],
    }


WALLET_OF_ASSET = text(
    """
    SELECT a.id, a.owner, a.asset_code, s.decimal_places
    FROM accounts a JOIN assets s ON s.tenant_id = a.tenant_id AND s.code = a.asset_code
    WHERE a.tenant_id = :tenant_id AND a.asset_code = :asset_code AND a.owner = :owner
      AND NOT a.is_system
    """
)


def get_balance_as_of(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    as_of: datetime,
    known_at: datetime | None = None,
) -> dict[str, Any]:
    """A wallet's balance counting its entries effective at or before `as_of` (and, with
    `known_at`, recorded by then). Holds, credit limit and status have no history: an as-of
    answer carries none of them."""
    params = {"tenant_id": tenant_id, "asset_code": asset_code, "owner": user_id}
    row = conn.execute(WALLET_OF_ASSET, params).mappings().first()
    if row is None:
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    return {
        "user_id": row["owner"],
        "asset_code": row["asset_code"],
        "balance": balance_as_of(conn, row["id"], as_of, known_at),
        "decimal_places": row["decimal_places"],
        "as_of": as_of.isoformat(),
        "known_at": known_at.isoformat() if known_at is not None else None,
    }


def version_cursor(account_version: int) -> str:
    """The cursor of a wallet page that continues below `account_version`."""
    return encode_cursor(f"v1:{account_version}")


def cursor_version(cursor: str) -> int:
    """The account version a wallet page continues below; InvalidCursor if it is not ours."""
    return decode_cursor(cursor, _version)


def _version(position: str) -> int:
    prefix, _, number = position.partition(":")
    version = int(number)
    if prefix != "v1" or not 1 <= version <= MAX_VERSION:
        raise ValueError(position)
    return version


def wallet_account_id(conn: Connection, tenant_id: uuid.UUID, user_id: str, asset_code: str) -> int:
    """The account id of a wallet, or WalletNotFound."""
    account_id = conn.execute(
        text(
            "SELECT id FROM accounts WHERE tenant_id = :t AND asset_code = :a AND owner = :o"
            " AND NOT is_system"
        ),
        {"t": tenant_id, "a": asset_code, "o": user_id},
    ).scalar()
    if account_id is None:
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    return int(account_id)


def wallet_page(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    limit: int,
    cursor: str | None,
) -> tuple[int, int | None, int]:
    """Where a keyset page of a wallet's journal or holds starts: (page size, the position
    it continues below, the wallet's account id); WalletNotFound or InvalidCursor."""
    before = cursor_version(cursor) if cursor else None
    return (
        page_size(limit),
        before,
        wallet_account_id(conn, tenant_id, user_id, asset_code),
    )


def wallet_history(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A wallet's journal, newest first, in keyset pages of at most `limit` entries."""
    limit, before, account_id = wallet_page(conn, tenant_id, user_id, asset_code, limit, cursor)
    return account_history(conn, account_id, limit=limit, before=before)


ACCOUNT_HISTORY = text(
    """
    SELECT e.account_version, e.amount, e.balance_after, e.created_at,
           t.id AS transaction_id, t.type, t.reference_id
    FROM entries e JOIN transactions t ON t.id = e.transaction_id
    WHERE e.account_id = :account_id
      AND (CAST(:before AS bigint) IS NULL OR e.account_version < :before)
    ORDER BY e.account_version DESC
    LIMIT :limit
    """
)


def account_history(
    conn: Connection, account_id: int, *, limit: int, before: int | None
) -> dict[str, Any]:
    """One keyset page of any account's journal, newest first: at most `limit` entries
    below version `before` (from the top when None), and the cursor of the next page."""
    rows = (
        conn.execute(
            ACCOUNT_HISTORY, {"account_id": account_id, "before": before, "limit": limit + 1}
        )
        .mappings()
        .all()
    )
    page = rows[:limit]
    items = [
        {
            "transaction_id": str(row["transaction_id"]),
            "type": row["type"],
            "reference_id": row["reference_id"],
            "amount": row["amount"],
            "balance_after": row["balance_after"],
            "version": row["account_version"],
            "created_at": row["created_at"].isoformat(),
        }
        for row in page
    ]
    next_cursor = version_cursor(page[-1]["account_version"]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def user_wallets(conn: Connection, tenant_id: uuid.UUID, user_id: str) -> list[dict[str, Any]]:
    """Every wallet of one user, one per asset, as `get_balance` shows each."""
    # Asset by asset: each lookup is one probe of the (tenant, asset, owner) key.
    codes = conn.execute(
        text(
            """
            SELECT s.code FROM assets s
            WHERE s.tenant_id = :t AND EXISTS (
                SELECT 1 FROM accounts a
                WHERE a.tenant_id = s.tenant_id AND a.asset_code = s.code AND a.owner = :o
                  AND NOT a.is_system)
            ORDER BY s.code
            """
        ),
        {"t": tenant_id, "o": user_id},
    ).scalars()
    return [get_balance(conn, tenant_id, user_id, code) for code in list(codes)]
