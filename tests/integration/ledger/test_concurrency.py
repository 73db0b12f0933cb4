"""Real threads against real PostgreSQL: racing workers never overdraw, deadlock or double-apply."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.intake import accept_transaction
from ledger.posting import BatchResult, post_transactions
from ledger.transaction_request import TransactionRequest
from tests.integration.ledger.helpers import balance, run, submit

T = TypeVar("T")
R = TypeVar("R")


def all_at_once(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Run `work` on every item, one thread each, released together by a barrier."""
    start = threading.Barrier(len(items), timeout=60)

    def together(item: T) -> R:
        start.wait()
        return work(item)

    with ThreadPoolExecutor(len(items)) as pool:
        futures = [pool.submit(together, item) for item in items]
        # .result() re-raises whatever a thread raised: no error escapes unseen.
        return [future.result() for future in futures]


def statuses(engine: Engine, ids: Sequence[uuid.UUID]) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, result_code FROM transactions WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        ).all()
    by_id = {row.id: (row.status, row.result_code) for row in rows}
    return [by_id[i] for i in ids]


def wallet_journal(engine: Engine, tenant_id: uuid.UUID, owner: str) -> list[dict[str, Any]]:
    """A wallet's entries in the order they were applied, with their transactions."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT e.account_version, e.amount, e.balance_after, t.id AS transaction_id,
                       t.type, t.user_id, t.to_user_id, t.amount AS transaction_amount
                FROM entries e
                JOIN accounts a ON a.id = e.account_id
                JOIN transactions t ON t.id = e.transaction_id
                WHERE a.tenant_id = :t AND a.asset_code = 'EUR' AND a.owner = :o
                ORDER BY e.account_version
                """
            ),
            {"t": tenant_id, "o": owner},
        ).mappings()
        return [dict(row) for row in rows]


def submit_many(
    engine: Engine, tenant_id: uuid.UUID, requests: Sequence[dict[str, Any]]
) -> list[uuid.UUID]:
    with unit_of_work(engine) as work:
        return [
            accept_transaction(
                work,
                tenant_id,
                TransactionRequest(
                    reference_id=uuid.uuid4().hex, asset_code="EUR", **fields
                ).validated(),
                admin=True,
            ).id
            for fields in requests
        ]


def test_fifty_concurrent_spends_of_one_never_overdraw_a_wallet_of_twenty(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=20)
    ids = submit_many(engine, tenant.id, [{"type": "spend", "user_id": "alice", "amount": 1}] * 50)

    results = all_at_once(lambda i: post_transactions(engine, [i]), ids)

    assert Counter(statuses(engine, ids)) == {
        ("applied", None): 20,
        ("rejected", "insufficient_funds"): 30,
    }
    # Each caller was told the outcome the database recorded for its transaction.
    reported = {o.transaction_id: (o.status, o.code) for r in results for o in r.outcomes}
    assert reported == dict(zip(ids, statuses(engine, ids), strict=True))
    assert balance(engine, tenant.id, "alice") == 0
    journal = wallet_journal(engine, tenant.id, "alice")
    assert [e["account_version"] for e in journal] == list(range(1, 22))
    assert [e["balance_after"] for e in journal] == [20, *range(19, -1, -1)]
    assert all(e["balance_after"] >= 0 for e in journal)


def test_five_hundred_crossing_transfers_from_twenty_threads_all_finish_consistently(
    engine, tenant
):
    run(engine, tenant.id, "topup", user_id="a", amount=100)
    run(engine, tenant.id, "topup", user_id="b", amount=100)
    rng = random.Random(20240501)
    transfers = []
    for n in range(500):
        source, target = ("a", "b") if n % 2 else ("b", "a")
        transfers.append(
            {
                "type": "transfer",
                "user_id": source,
                "to_user_id": target,
                "amount": rng.randint(1, 60),
            }
        )
    ids = submit_many(engine, tenant.id, transfers)
    chunks = [ids[k::20] for k in range(20)]

    def apply_one_by_one(chunk: list[uuid.UUID]) -> list[BatchResult]:
        return [post_transactions(engine, [i]) for i in chunk]

    results = all_at_once(apply_one_by_one, chunks)

    # Every call settled its transaction: nothing left queued or failed by a deadlock.
    assert all(len(r.outcomes) == 1 and not r.skipped for rs in results for r in rs)
    outcome = Counter(statuses(engine, ids))
    assert set(outcome) <= {("applied", None), ("rejected", "insufficient_funds")}
    assert sum(outcome.values()) == 500
    applied = outcome[("applied", None)]
    assert applied > 0

    # Both wallets saw the same transfers in the same order: one serial history.
    journal_a = wallet_journal(engine, tenant.id, "a")
    journal_b = wallet_journal(engine, tenant.id, "b")
    order = [e["transaction_id"] for e in journal_a[1:]]
    assert order == [e["transaction_id"] for e in journal_b[1:]]
    assert len(order) == applied

    # Replaying that history sequentially gives every balance the engine wrote.
    replay = {"a": 100, "b": 100}
    for entry_a, entry_b in zip(journal_a[1:], journal_b[1:], strict=True):
        source, target = entry_a["user_id"], entry_a["to_user_id"]
        amount = entry_a["transaction_amount"]
        assert replay[source] >= amount, "a transfer was applied without the funds"
        replay[source] -= amount
        replay[target] += amount
        assert (entry_a["balance_after"], entry_b["balance_after"]) == (replay["a"], replay["b"])
    assert balance(engine, tenant.id, "a") == replay["a"]
    assert balance(engine, tenant.id, "b") == replay["b"]
    assert replay["a"] + replay["b"] == 200


def test_concurrent_batches_over_shared_wallets_do_not_deadlock(engine, tenant):
    wallets = [f"w{n}" for n in range(6)]
    for owner in wallets:
        run(engine, tenant.id, "topup", user_id=owner, amount=500)
    rng = random.Random(7)
    batches = []
    for _ in range(8):
        requests = []
        for _ in range(40):
            source, target = rng.sample(wallets, 2)
            requests.append(
                {"type": "transfer", "user_id": source, "to_user_id": target, "amount": 50}
            )
        batches.append(submit_many(engine, tenant.id, requests))

    # Each batch locks several wallets; batches overlap in every possible order.
    results = all_at_once(lambda batch: post_transactions(engine, batch), batches)

    every = [i for batch in batches for i in batch]
    assert sum(len(r.outcomes) for r in results) == len(every)
    assert {s for s, _ in statuses(engine, every)} <= {"applied", "rejected"}
    for owner in wallets:
        journal = wallet_journal(engine, tenant.id, owner)
        running = 0
        for entry in journal:
            running += entry["amount"]
            assert entry["balance_after"] == running >= 0
        assert balance(engine, tenant.id, owner) == running
    assert sum(balance(engine, tenant.id, owner) for owner in wallets) == 3000


def test_one_transaction_applied_from_two_threads_at_once_is_applied_once(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    for round in range(20):
        transaction_id = submit(engine, tenant.id, "spend", user_id="alice", amount=10).id

        results = all_at_once(lambda i: post_transactions(engine, [i]), [transaction_id] * 2)

        applied = [r for r in results if r.status_of(transaction_id) == "applied"]
        skipped = [r for r in results if r.skipped == [transaction_id] and not r.outcomes]
        assert (len(applied), len(skipped)) == (1, 1), f"round {round}: {results}"
        with engine.connect() as conn:
            entries = conn.execute(
                text("SELECT count(*) FROM entries WHERE transaction_id = :id"),
                {"id": transaction_id},
            ).scalar_one()
        assert entries == 2
        assert balance(engine, tenant.id, "alice") == 1000 - 10 * (round + 1)
