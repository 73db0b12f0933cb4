"""Helpers for ledger-time tests: entries with chosen effective and recorded times.

`insert_topup` writes an applied top-up (wallet +x, @topup -x) straight into the tables as
their owner, the way the posting engine does (balances, versions, balance_after), so that
`tally verify` still holds; only the recorded time is the caller's instead of now. It keeps
no checkpoints: use it on accounts below 1,000 versions, or go through `post_backdated`.
`post_backdated` goes through intake and the real posting engine, the transaction's
`effective_at` set as intake will set it for a backdated submission.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from ledger.db import unit_of_work
from ledger.posting import post_transactions
from tests.integration.ledger.helpers import submit

ENSURE_WALLET = text(
    "INSERT INTO accounts (tenant_id, asset_code, owner, is_system) VALUES (:t, :a, :o, false)"
    " ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING"
)
LOCK = text(
    "SELECT id, owner, balance, version FROM accounts"
    " WHERE tenant_id = :t AND asset_code = :a AND owner = ANY(:owners) ORDER BY id FOR UPDATE"
)
INSERT_TRANSACTION = text(
    """
    INSERT INTO transactions (tenant_id, type, reference_id, request_hash, status, asset_code,
                              amount, user_id, reason, effective_at, created_at, updated_at,
                              completed_at)
    VALUES (:t, :type, :reference_id, 'inserted-by-test', 'applied', :a, :amount, :o, :reason,
            :effective_at, :recorded_at, :recorded_at, :recorded_at)
    RETURNING id
    """
)
INSERT_ENTRY = text(
    """
    INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                         account_version, created_at, effective_at)
    VALUES (:t, :transaction_id, :account_id, :amount, :balance_after, :version,
            :recorded_at, :effective_at)
    """
)
MOVE = text("UPDATE accounts SET balance = :balance, version = :version WHERE id = :id")


def insert_topup(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    amount: int,
    *,
    effective_at: datetime,
    recorded_at: datetime,
    asset_code: str = "EUR",
) -> uuid.UUID:
    """An applied top-up of `amount` effective at `effective_at`, recorded at `recorded_at`
    (both entries), on an open connection of the tables' owner; a negative `amount` is an
    adjustment taking it back (to `@adjustments`)."""
    kind, other = ("topup", "@topup") if amount > 0 else ("adjustment", "@adjustments")
    names = {"t": tenant_id, "a": asset_code}
    conn.execute(ENSURE_WALLET, {**names, "o": user_id})
    accounts = {row.owner: row for row in conn.execute(LOCK, {**names, "owners": [user_id, other]})}
    times = {"effective_at": effective_at, "recorded_at": recorded_at}
    transaction = {
        "type": kind,
        "o": user_id,
        "amount": amount,
        "reason": "test" if kind == "adjustment" else None,
        "reference_id": uuid.uuid4().hex,
    }
    transaction_id = conn.execute(
        INSERT_TRANSACTION, {**names, **times, **transaction}
    ).scalar_one()
    for owner, signed in ((user_id, amount), (other, -amount)):
        account = accounts[owner]
        balance, version = account.balance + signed, account.version + 1
        conn.execute(
            INSERT_ENTRY,
            {
                **times,
                "t": tenant_id,
                "transaction_id": transaction_id,
                "account_id": account.id,
                "amount": signed,
                "balance_after": balance,
                "version": version,
            },
        )
        conn.execute(MOVE, {"balance": balance, "version": version, "id": account.id})
    return uuid.UUID(str(transaction_id))


def topups(
    engine: Engine,
    tenant_id: uuid.UUID,
    user_id: str,
    moves: list[tuple[int, datetime, datetime]],
) -> None:
    """`insert_topup` for each (amount, effective_at, recorded_at), in one commit."""
    with unit_of_work(engine) as work:
        for amount, effective_at, recorded_at in moves:
            insert_topup(
                work.connection,
                tenant_id,
                user_id,
                amount,
                effective_at=effective_at,
                recorded_at=recorded_at,
            )


def post_backdated(
    engine: Engine, tenant_id: uuid.UUID, effective_at: datetime, type: str, **fields: Any
) -> uuid.UUID:
    """Submit through intake, give the queued transaction its `effective_at` (what intake
    records for a backdated submission), and apply it with the posting engine."""
    submission = submit(engine, tenant_id, type, **fields)
    with unit_of_work(engine) as work:
        work.connection.execute(
            text("UPDATE transactions SET effective_at = :e WHERE id = :id AND status = 'queued'"),
            {"e": effective_at, "id": submission.id},
        )
    post_transactions(engine, [submission.id])
    return submission.id


def database_now(engine: Engine) -> datetime:
    """The database's clock now (entries record the posting transaction's `now()`)."""
    with engine.connect() as conn:
        moment: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return moment
