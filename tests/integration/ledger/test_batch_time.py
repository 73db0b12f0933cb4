"""A batch's time is read once its locks are held (ledger/posting.py): a batch that waited
for a close or for an account never writes entries recorded, or effective, before the moment
the one it waited for let go."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import Engine, TextClause, text

from ledger.db import unit_of_work
from ledger.posting import post_transactions
from ledger.verify import verify_ledger
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run, someone_waits_for, submit
from tests.support.stack import eventually

CLOSE_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('tally-close:' || CAST(:t AS text), 0))"
)
LOCK_WALLET = text(
    "SELECT id FROM accounts WHERE tenant_id = :t AND owner = :owner AND asset_code = 'EUR' "
    "FOR UPDATE"
)


def apply_while_held(
    engine: Engine, transaction_id: uuid.UUID, hold: TextClause, **params: object
) -> datetime:
    """Apply `transaction_id` while another transaction holds `hold`; that transaction lets go
    only once the batch waits on it. The moment it let go."""
    with ThreadPoolExecutor(1) as pool:
        with unit_of_work(engine) as work:
            work.connection.execute(hold, params)
            applying = pool.submit(post_transactions, engine, [transaction_id])
            eventually(lambda: someone_waits_for(engine, work.connection), 30, "the batch to wait")
            released_at: datetime = work.connection.execute(
                text("SELECT clock_timestamp()")
            ).scalar_one()
        outcomes = applying.result(timeout=30).outcomes
    assert [outcome.status for outcome in outcomes] == ["applied"], outcomes
    return released_at


def entry_times(engine: Engine, transaction_id: uuid.UUID) -> list[tuple[datetime, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT created_at, effective_at FROM entries WHERE transaction_id = :id"),
            {"id": transaction_id},
        )
        return [(created, effective) for created, effective in rows]


def assert_counted_from(
    engine: Engine, tenant: TenantFixture, transaction_id: uuid.UUID, released_at: datetime
) -> None:
    """Both entries of the transaction recorded, and effective, no earlier than
    `released_at`; the ledger consistent."""
    times = entry_times(engine, transaction_id)
    assert len(times) == 2
    for created_at, effective_at in times:
        assert created_at >= released_at
        assert effective_at == created_at
    with engine.connect() as conn:
        assert verify_ledger(conn, tenant.id).ok


def test_a_batch_that_waited_for_a_close_counts_from_after_it(
    engine: Engine, tenant: TenantFixture
) -> None:
    topup = submit(engine, tenant.id, "topup", user_id="alice", amount=100).id

    released_at = apply_while_held(engine, topup, CLOSE_LOCK, t=tenant.id)

    assert_counted_from(engine, tenant, topup, released_at)


def test_a_batch_that_waited_for_an_account_counts_from_after_it(
    engine: Engine, tenant: TenantFixture
) -> None:
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    spend = submit(engine, tenant.id, "spend", user_id="alice", amount=40).id

    released_at = apply_while_held(engine, spend, LOCK_WALLET, t=tenant.id, owner="alice")

    assert_counted_from(engine, tenant, spend, released_at)
