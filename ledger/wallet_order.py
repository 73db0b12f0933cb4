"""Per wallet, transactions apply in the order they were accepted, also with several
workers: a batch leaves queued any transaction whose wallet has an earlier queued one that
the batch does not hold (another worker is applying it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger.proposals import AccountKey
from ledger.vocabulary import TransactionType

# Rows older than a batch's newest that the batch does not hold: another worker is applying
# them (or the relay has them locked for an instant). A transaction of the batch naming one
# of their wallets must wait for them, or a spend could overtake the top-up that funds it.
# Batches claim the oldest queued rows first, so few rows are older than a batch's newest;
# but the queued partial index also holds entries of rows applied since the last vacuum.
# An index scan in seq order (not a bitmap scan) marks those dead as it passes, so later
# scans skip them, and the limit bounds the rest.
EARLIER_QUEUED = text(
    """
    SELECT tenant_id, type, asset_code, user_id, to_user_id, splits, to_asset_code, postings,
           original_transaction_id, seq
    FROM transactions
    WHERE status = 'queued' AND seq < :newest AND next_attempt_at <= now()
      AND NOT id = ANY(CAST(:ids AS uuid[]))
    ORDER BY seq
    LIMIT 1000
    """
)
# The legs of the split spends and captures that queued refunds refund: a refund without
# legs of its own debits those legs' wallets, which its row does not name.
REFUNDED_LEGS = text(
    """
    SELECT id, tenant_id, splits FROM transactions WHERE id = ANY(:ids) AND splits IS NOT NULL
    """
)


def _refunded_leg_wallets(
    conn: Connection, rows: Iterable[Any]
) -> dict[uuid.UUID, tuple[uuid.UUID, list[str]]]:
    """original id -> (tenant, wallets of its legs), for each split original that a refund
    without `splits` of its own refunds."""
    ids = {
        row["original_transaction_id"]
        for row in rows
        if row["type"] == TransactionType.REFUND
        and row["splits"] is None
        and row["original_transaction_id"] is not None
    }
    if not ids:
        return {}
    return {
        found.id: (
            found.tenant_id,
            [str(leg["to_user_id"]) for leg in found.splits if "to_user_id" in leg],
        )
        for found in conn.execute(REFUNDED_LEGS, {"ids": list(ids)})
    }


def _wallets(
    row: Any, refunded_legs: Mapping[uuid.UUID, tuple[uuid.UUID, list[str]]]
) -> list[AccountKey]:
    """The wallets a queued row names: its own, its target's, its legs', an exchange's
    buyer's and a journal's; a refund's, the wallets of the legs it takes back from."""
    tenant_id = row["tenant_id"]
    keys = [
        (tenant_id, str(p["asset_code"]), str(owner))
        for p in row["postings"] or ()
        for owner in (p["from"], p["to"])
        if not str(owner).startswith("@")
    ]
    asset = row["asset_code"]
    if asset is None:
        return keys
    keys += [(tenant_id, asset, owner) for owner in (row["user_id"], row["to_user_id"]) if owner]
    keys += [
        (tenant_id, asset, str(leg["to_user_id"]))
        for leg in row["splits"] or ()
        if "to_user_id" in leg
    ]
    if row["to_asset_code"] is not None:
        keys.append((tenant_id, row["to_asset_code"], row["to_user_id"] or row["user_id"]))
    if row["type"] == TransactionType.REFUND and row["splits"] is None:
        legs_tenant, owners = refunded_legs.get(row["original_transaction_id"], (None, []))
        if legs_tenant == tenant_id:
            keys += [(tenant_id, asset, owner) for owner in owners]
    return keys


def in_wallet_order(
    conn: Connection, claimed: list[RowMapping]
) -> tuple[list[RowMapping], list[RowMapping]]:
    """Split the claimed rows (in seq order) into those free to apply and those that must
    wait for an earlier transaction on one of their wallets held elsewhere."""
    earliest: dict[AccountKey, int] = {}
    params = {"newest": claimed[-1]["seq"], "ids": [row["id"] for row in claimed]}
    earlier = list(conn.execute(EARLIER_QUEUED, params).mappings())
    if not earlier:
        return claimed, []
    refunded_legs = _refunded_leg_wallets(conn, [*earlier, *claimed])
    for row in earlier:
        for key in _wallets(row, refunded_legs):
            earliest[key] = min(earliest.get(key, row["seq"]), row["seq"])
    if not earliest:
        return claimed, []
    free, waiting = [], []
    for row in claimed:
        keys = _wallets(row, refunded_legs)
        if any(earliest.get(key, row["seq"]) < row["seq"] for key in keys):
            waiting.append(row)
            # Whatever comes after it on these wallets waits too.
            for key in keys:
                earliest[key] = min(earliest.get(key, row["seq"]), row["seq"])
        else:
            free.append(row)
    return free, waiting
