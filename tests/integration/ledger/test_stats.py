"""Ledger-wide stats count what the posting engine decided (the numbers behind /metrics)."""

from __future__ import annotations

from sqlalchemy import Engine

from ledger import stats
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run


def counted(
    numbers: stats.TransactionStats, type: str, status: str, code: str | None = None
) -> int:
    return sum(
        o.count
        for o in numbers.outcomes
        if (o.type, o.status) == (type, status) and code in (None, o.code)
    )


def read(engine: Engine) -> tuple[stats.TransactionStats, list[tuple[int, int]]]:
    with engine.connect() as conn:
        stats.limit_statement_time(conn, 5000)
        return stats.transaction_stats(conn), stats.batch_sizes(conn)


def test_decided_transactions_are_counted_by_type_outcome_and_latency(
    engine: Engine, tenant: TenantFixture
) -> None:
    before, batches_before = read(engine)

    assert run(engine, tenant.id, "topup", user_id="counted", amount=500)["status"] == "applied"
    spend = run(engine, tenant.id, "spend", user_id="counted", amount=10_000)
    assert (spend["status"], spend["result"]["code"]) == ("rejected", "insufficient_funds")

    after, batches_after = read(engine)
    assert counted(after, "topup", "applied") == counted(before, "topup", "applied") + 1
    assert counted(after, "spend", "rejected", "insufficient_funds") == (
        counted(before, "spend", "rejected", "insufficient_funds") + 1
    )
    assert after.decided == before.decided + 2
    assert after.latency_sum >= before.latency_sum
    # Both were decided within the widest bound, in well under five minutes.
    assert after.latency_buckets[-1] == before.latency_buckets[-1] + 2
    decided_in_batches = sum(size * n for size, n in batches_after)
    assert decided_in_batches == sum(size * n for size, n in batches_before) + 2


def test_webhook_deliveries_are_counted_once_the_table_exists(engine: Engine) -> None:
    with engine.connect() as conn:
        counts = stats.webhook_delivery_counts(conn)
        age = stats.oldest_queued_age(conn)
    assert counts is not None
    assert all(c.count > 0 and c.attempts >= 0 for c in counts)
    assert age >= 0
