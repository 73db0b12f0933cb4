"""Opening a batch's book: the holds and accounts it locks, in the global lock order, and
what its refunds, captures and voids need to know of the transactions they name."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, text

from ledger.holds import LOCK_HOLDS
from ledger.legs import Leg, legs_from_json
from ledger.rules import AccountState, Book, HoldState, Original, Proposal, from_row
from ledger.vocabulary import HOLD_ACTIONS, SystemAccount, TransactionType

# Ascending id order is the global lock order: two batches can never wait on each other
# in a cycle. LockRows sits above the Sort, so rows are locked in this order.
LOCK_ACCOUNTS = text(
    """
    SELECT a.* FROM accounts a
    JOIN unnest(CAST(:tenant_ids AS uuid[]), CAST(:assets AS text[]), CAST(:owners AS text[]))
      AS k(tenant_id, asset_code, owner)
      ON a.tenant_id = k.tenant_id AND a.asset_code = k.asset_code AND a.owner = k.owner
    ORDER BY a.id
    FOR UPDATE OF a
    """
)
ORIGINALS = text(
    """
    SELECT id, tenant_id, type, status, user_id, asset_code, amount, to_user_id, to_account,
           splits
    FROM transactions WHERE id = ANY(:ids)
    """
)
# What each applied refund took back, and from which legs (NULL splits: a refund from
# before split payments, of an original with one destination).
REFUNDS = text(
    """
    SELECT original_transaction_id, amount, splits
    FROM transactions
    WHERE original_transaction_id = ANY(:ids) AND type = 'refund' AND status = 'applied'
    """
)


def open_book(
    conn: Connection,
    now: datetime | None,
    proposals: list[Proposal],
    heads: dict[int, bytes | None] | None = None,
) -> Book:
    """Lock the holds the batch captures or voids, then every account it touches (ascending
    id: the global lock order), and load what refunds, captures and voids need; `heads`
    receives each locked account's chain head (ledger/chains.py)."""
    hold_ids = sorted(
        {
            hold_id
            for p in proposals
            if p.type in HOLD_ACTIONS and (hold_id := p.original_transaction_id) is not None
        }
    )
    holds = conn.execute(LOCK_HOLDS, {"ids": hold_ids}).mappings().all() if hold_ids else []
    proposals[:] = _with_original_legs(conn, proposals)
    keys = sorted({key for proposal in proposals for key in proposal.account_keys()})
    rows = (
        conn.execute(
            LOCK_ACCOUNTS,
            {
                "tenant_ids": [k[0] for k in keys],
                "assets": [k[1] for k in keys],
                "owners": [k[2] for k in keys],
            },
        )
        .mappings()
        .all()
    )
    if heads is not None:
        heads.update((row["id"], row["last_hash"]) for row in rows)
    book = Book(
        {
            (row["tenant_id"], row["asset_code"], row["owner"]): from_row(AccountState, row)
            for row in rows
        },
        holds={row["transaction_id"]: from_row(HoldState, row) for row in holds},
        now=now,
    )
    # Read only after the wallet locks are held: every refund of a spend locks that
    # spend's wallet, so these sums cannot move under us.
    original_ids = [p.original_transaction_id for p in proposals if p.original_transaction_id]
    if original_ids:
        for row in conn.execute(ORIGINALS, {"ids": original_ids}).mappings():
            book.originals[row["id"]] = from_row(Original, row)
    refunded_ids = [
        p.original_transaction_id
        for p in proposals
        if p.type == TransactionType.REFUND and p.original_transaction_id is not None
    ]
    if refunded_ids:
        _load_refunds(conn, book, refunded_ids)
    return book


def _with_original_legs(conn: Connection, proposals: list[Proposal]) -> list[Proposal]:
    """The proposals, each refund carrying the legs of what it refunds, so that their
    accounts are locked with the rest. An applied original's destinations never change."""
    refund_of = {
        p.id: p.original_transaction_id
        for p in proposals
        if p.type == TransactionType.REFUND and p.original_transaction_id is not None
    }
    if not refund_of:
        return proposals
    rows = conn.execute(ORIGINALS, {"ids": list(set(refund_of.values()))}).mappings()
    originals = {row["id"]: from_row(Original, row) for row in rows}
    found = []
    for proposal in proposals:
        original_id = refund_of.get(proposal.id)
        original = originals.get(original_id) if original_id is not None else None
        if original is not None and original.tenant_id == proposal.tenant_id:
            owner = original.to_user_id or original.to_account or proposal.destination()
            legs = original.splits or (Leg(owner, original.amount or 0),)
            proposal = replace(proposal, original_legs=legs)
        found.append(proposal)
    return found


def _load_refunds(conn: Connection, book: Book, original_ids: list[uuid.UUID]) -> None:
    """What applied refunds took back from each original, in all and per leg."""
    for row in conn.execute(REFUNDS, {"ids": original_ids}).mappings():
        original_id, amount = row["original_transaction_id"], row["amount"]
        book.refunded[original_id] = book.refunded.get(original_id, 0) + amount
        legs = legs_from_json(row["splits"])
        if legs is None:
            original = book.originals.get(original_id)
            if original is None or original.splits:
                continue
            owner = original.to_user_id or original.to_account or SystemAccount.REVENUE
            legs = (Leg(owner, amount),)
        for leg in legs:
            key = (original_id, leg.owner)
            book.leg_refunded[key] = book.leg_refunded.get(key, 0) + leg.amount
