"""A worker killed with SIGKILL mid-stream loses nothing and applies nothing twice
(docs/design.md#redelivery-and-the-relay).

2,000 top-ups and spends over many wallets are submitted over HTTP. Once the worker has
applied some of them it is killed with its relay (each one's whole process group: Celery
parent and pool children; the relay). The second half of the submissions is held back
until then, so the kill always falls while work is outstanding. A new worker and relay
then have to finish everything: the broker redelivers what the dead worker held
unacknowledged, the relay re-publishes what is still queued, and the ledger ignores
whatever is no longer queued.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from tests.conftest import TenantFixture
from tests.support.stack import Stack, status_counts, submit_concurrently, wait_until

TOTAL = 2000
WALLETS = 100
TOPUP, SPEND = 100, 60


def submissions() -> list[tuple[str, dict[str, Any]]]:
    """Alternating top-ups and spends, spread over WALLETS wallets."""
    calls = []
    for i in range(TOTAL):
        path, amount = ("/wallets/topup", TOPUP) if i % 2 == 0 else ("/wallets/spend", SPEND)
        calls.append(
            (
                path,
                {
                    "user_id": f"w{(i // 2) % WALLETS}",
                    "asset_code": "EUR",
                    "amount": amount,
                    "reference_id": f"kill-{i}-{uuid.uuid4().hex[:8]}",
                },
            )
        )
    return calls


def in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; its result (or exception) lands in the returned list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # re-raised by the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.slow
def test_worker_killed_while_applying_loses_and_duplicates_nothing(
    stack: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    calls = submissions()
    first, second = calls[: TOTAL // 2], calls[TOTAL // 2 :]
    worker_killed = threading.Event()

    def submit_all() -> list[requests.Response]:
        responses = submit_concurrently(stack.base_url, tenant.api_key, first, threads=24)
        assert worker_killed.wait(300), "the worker was never killed"
        return responses + submit_concurrently(stack.base_url, tenant.api_key, second, threads=24)

    submitter, submitted = in_background(submit_all)
    wait_until(
        lambda: status_counts(engine, tenant.id)["applied"] >= 50,
        timeout=120,
        what="the worker to apply its first transactions",
    )
    (worker,) = stack.workers
    stack.kill_worker(worker)
    worker_killed.set()
    at_kill = status_counts(engine, tenant.id)
    assert 0 < at_kill["applied"] + at_kill["rejected"] < TOTAL

    stack.start_worker()
    submitter.join(300)
    assert not submitter.is_alive(), "submission did not finish"
    (responses,) = submitted
    if isinstance(responses, BaseException):
        raise responses
    assert [r.status_code for r in responses] == [202] * TOTAL, {r.text for r in responses}
    wait_until(
        lambda: status_counts(engine, tenant.id)["queued"] == 0,
        timeout=180,
        what=f"all {TOTAL} transactions to reach an outcome",
    )

    counts = status_counts(engine, tenant.id)
    assert sum(counts.values()) == TOTAL
    assert set(counts) <= {"applied", "rejected"}, counts
    with engine.connect() as conn:
        entries_per_transaction: dict[Any, Any] = dict(
            conn.execute(
                text(
                    "SELECT t.status, array_agg(DISTINCT n) FROM transactions t,"
                    " LATERAL (SELECT count(*) AS n FROM entries e"
                    "          WHERE e.transaction_id = t.id) e"
                    " WHERE t.tenant_id = :t GROUP BY t.status"
                ),
                {"t": tenant.id},
            ).all()
        )
        rejected: dict[Any, Any] = dict(
            conn.execute(
                text(
                    "SELECT type, count(*) FROM transactions"
                    " WHERE tenant_id = :t AND status = 'rejected' GROUP BY type"
                ),
                {"t": tenant.id},
            ).all()
        )
        expected_balances: dict[Any, Any] = dict(
            conn.execute(
                text(
                    "SELECT user_id, sum(CASE type WHEN 'topup' THEN amount ELSE -amount END)"
                    " FROM transactions WHERE tenant_id = :t AND status = 'applied'"
                    " GROUP BY user_id"
                ),
                {"t": tenant.id},
            ).all()
        )
        balances: dict[Any, Any] = dict(
            conn.execute(
                text(
                    "SELECT owner, balance FROM accounts"
                    " WHERE tenant_id = :t AND NOT is_system AND asset_code = 'EUR'"
                ),
                {"t": tenant.id},
            ).all()
        )
    # Applied exactly once: two entries each; a rejection wrote none.
    assert entries_per_transaction["applied"] == [2]
    assert entries_per_transaction.get("rejected", [0]) == [0]
    # Top-ups cannot be refused; only spends that found too little money were.
    assert "topup" not in rejected
    assert balances == expected_balances
    assert len(balances) == WALLETS
