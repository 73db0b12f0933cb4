"""The baseline (docs/performance.md#the-raw-sql-baseline): the ledger write run straight in
SQL, one commit per transfer.

Lock two accounts, insert the transaction and two entries, update two balances: what the
stack does per transfer, without HTTP, broker or Python in between, on the same database.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.database_urls import libpq_url
from ledger.money import register_money_loader
from tally.bench.workloads import ASSET, FUNDING, MAX_AMOUNT, seed_tenant

if TYPE_CHECKING:
    from sqlalchemy import Engine

RAW_LOCK = "SELECT id, balance, version FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
RAW_TRANSACTION = """
    INSERT INTO transactions (id, tenant_id, type, reference_id, request_hash, status,
                              asset_code, amount, user_id, to_user_id, completed_at)
    VALUES (%s, %s, 'transfer', %s, 'raw', 'applied', %s, %s, %s, %s, now())
"""
RAW_ENTRIES = """
    INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                         account_version, effective_at)
    VALUES (%s, %s, %s, %s, %s, %s, now()), (%s, %s, %s, %s, %s, %s, now())
"""
RAW_BALANCES = """
    UPDATE accounts a SET balance = v.balance, version = v.version, updated_at = now()
    FROM (VALUES (%s::bigint, %s::numeric, %s::bigint), (%s, %s, %s)) AS v(id, balance, version)
    WHERE a.id = v.id
"""


@dataclass(frozen=True)
class RawJob:
    url: str
    tenant_id: str
    run_id: str
    # (index, debit account id, debit owner, credit account id, credit owner, amount)
    transfers: list[tuple[int, int, str, int, str, int]]
    start_at: float


def run_raw(job: RawJob) -> float:
    """Apply the transfers one commit each; the wall-clock time it took.

    Pipelined: after the locking SELECT answers, the writes and the COMMIT go out together,
    so the client's round trips and Python overhead stay small next to the server's work.
    """
    import psycopg

    with psycopg.connect(job.url) as conn:
        # Balances come back as Tally's own connections load them: int, not Decimal.
        register_money_loader(conn)
        delay = job.start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        with conn.pipeline():
            for index, debit, debit_owner, credit, credit_owner, amount in job.transfers:
                with conn.transaction():
                    locked = conn.execute(RAW_LOCK, ([debit, credit],)).fetchall()
                    state = {row[0]: (row[1], row[2]) for row in locked}
                    txn = uuid.uuid4()
                    reference = f"{job.run_id}-{index}"
                    conn.execute(
                        RAW_TRANSACTION,
                        (txn, job.tenant_id, reference, ASSET, amount, debit_owner, credit_owner),
                    )
                    debit_after = (state[debit][0] - amount, state[debit][1] + 1)
                    credit_after = (state[credit][0] + amount, state[credit][1] + 1)
                    conn.execute(
                        RAW_ENTRIES,
                        (
                            *(job.tenant_id, txn, debit, -amount, *debit_after),
                            *(job.tenant_id, txn, credit, amount, *credit_after),
                        ),
                    )
                    conn.execute(RAW_BALANCES, (debit, *debit_after, credit, *credit_after))
        return time.perf_counter() - started


def raw_baseline(
    engine: Engine, database_url: str, pattern: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the raw write for `pattern` from `--raw-clients` connections; count, time and rate."""
    from sqlalchemy import text

    from ledger.db import unit_of_work
    from ledger.intake import ensure_wallets

    count = args.raw_count if args.raw_count is not None else args.count
    run_id = f"raw-{pattern}-{uuid.uuid4().hex[:6]}"
    owners = [f"{run_id}-w{n}" for n in range(args.wallets)]
    # No key: the raw write never goes through the API.
    tenant_id = seed_tenant(engine, run_id, scopes=()).id
    with unit_of_work(engine) as work:
        conn = work.connection
        ensure_wallets(conn, tenant_id, [(ASSET, owner) for owner in [*owners, "hot"]])
        # Transfers between wallets only: a credit limit stands in for funding.
        conn.execute(
            text("UPDATE accounts SET credit_limit = :limit WHERE tenant_id = :t"),
            {"limit": FUNDING, "t": tenant_id},
        )
        rows = conn.execute(
            text("SELECT owner, id FROM accounts WHERE tenant_id = :t"), {"t": tenant_id}
        )
        ids: dict[str, int] = {owner: account_id for owner, account_id in rows}
    rng = random.Random(args.seed)
    transfers = []
    for index in range(count):
        debit = owners[rng.randrange(len(owners))]
        credit = "hot"
        # A split spend is measured against the uniform write: one transfer per transaction.
        if pattern in ("uniform", "splits"):
            credit = debit
            while credit == debit:
                credit = owners[rng.randrange(len(owners))]
        amount = rng.randint(1, MAX_AMOUNT)
        transfers.append((index, ids[debit], debit, ids[credit], credit, amount))
    clients = max(1, min(args.raw_clients, count))
    start_at = time.time() + 2.0
    jobs = [
        RawJob(
            libpq_url(database_url), str(tenant_id), run_id, transfers[number::clients], start_at
        )
        for number in range(clients)
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(clients) as pool:
        started = time.time()
        durations = pool.map(run_raw, jobs)
    elapsed = max(durations) if durations else time.time() - started
    return {
        "count": count,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "rate": round(count / elapsed, 1) if elapsed > 0 else 0.0,
    }
