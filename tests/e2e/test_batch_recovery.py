"""A worker killed mid-batch loses nothing and applies nothing twice
(docs/design.md#redelivery-and-the-relay, docs/design.md#batching).

4,000 transactions are accepted through the bulk endpoint before any worker runs. A
worker then starts applying them in batches; once it has committed some, its whole
process group is killed with SIGKILL, so the kill falls while batches are in flight.
A new worker must finish the rest: the batch that was open when the worker died rolled
back, the broker redelivers what it held unacknowledged, the relay re-publishes what is
still queued, and already-applied transactions are no-ops.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import TenantFixture, assert_invariants
from tests.support.stack import Stack, stack_env, status_counts, wait_until

TOTAL = 4000
WALLETS = 100
TOPUP, SPEND = 100, 60


@pytest.fixture
def api_only_stack(database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The API alone: workers are started (and killed) by the test; small batches so that
    there are many commits to fall between."""
    env = stack_env(database_url, broker_url, TALLY_BATCH_SIZE="50")
    stack = Stack(database_url, broker_url, tmp_path, env)
    stack.start_api()
    yield stack
    stack.stop()


def bulk_items(run: str) -> list[dict[str, Any]]:
    """Per wallet, a top-up then a spend it covers: every transaction should be applied."""
    items = []
    for i in range(TOTAL):
        kind, amount = ("topup", TOPUP) if i % 2 == 0 else ("spend", SPEND)
        items.append(
            {
                "type": kind,
                "user_id": f"w{(i // 2) % WALLETS}",
                "asset_code": "EUR",
                "amount": amount,
                "reference_id": f"{run}-{i}",
            }
        )
    return items


@pytest.mark.slow
def test_worker_killed_mid_batch_loses_and_duplicates_nothing(
    api_only_stack: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    stack = api_only_stack
    client = stack.client(tenant.api_key)
    items = bulk_items(uuid.uuid4().hex[:8])
    for start in range(0, TOTAL, 1000):
        response = client.post("/transactions/batch", {"transactions": items[start : start + 1000]})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1000
    assert status_counts(engine, tenant.id) == {"queued": TOTAL}

    doomed = stack.start_worker(concurrency=2)
    wait_until(
        lambda: status_counts(engine, tenant.id)["applied"] >= 100, 120, "a first applied batch"
    )
    stack.kill_worker(doomed)
    after_kill = status_counts(engine, tenant.id)
    assert after_kill["queued"] > 0, "the worker finished before it could be killed"

    stack.start_worker(concurrency=2)
    wait_until(
        lambda: status_counts(engine, tenant.id)["queued"] == 0, 180, "every transaction final"
    )

    assert status_counts(engine, tenant.id) == {"applied": TOTAL}
    with engine.connect() as conn:
        per_transaction = conn.execute(
            text(
                """
                SELECT t.id,
                       (SELECT count(*) FROM entries e WHERE e.transaction_id = t.id),
                       (SELECT count(*) FROM events v WHERE v.transaction_id = t.id)
                FROM transactions t WHERE t.tenant_id = :t
                """
            ),
            {"t": tenant.id},
        ).all()
        balances = dict(
            conn.execute(
                text("SELECT owner, balance FROM accounts WHERE tenant_id = :t AND NOT is_system"),
                {"t": tenant.id},
            ).all()
        )
    assert len(per_transaction) == TOTAL
    assert {(entries, events) for _, entries, events in per_transaction} == {(2, 1)}
    per_wallet = TOTAL // 2 // WALLETS
    assert balances == {f"w{n}": per_wallet * (TOPUP - SPEND) for n in range(WALLETS)}
    assert_invariants(engine, tenant.id)
