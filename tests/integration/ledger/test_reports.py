"""Reports in ledger time (ledger/reports.py) against oracles restated by hand, the trial
balance under concurrent posting, and verify's snapshot checks."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.intake import accept_transactions
from ledger.periods import close_period
from ledger.posting import post_transactions
from ledger.reports import movements, trial_balance
from ledger.transaction_request import TransactionRequest
from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import run
from tests.integration.ledger.period_helpers import run_backdated


def report_balances(engine: Engine, tenant_id: uuid.UUID, as_of: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        report = trial_balance(conn, tenant_id, "EUR", as_of)
    lines = {line["name"]: line["balance"] for line in report["system_accounts"]}
    return {**lines, "wallets": report["wallets"]["balance"], "total": report["total"]["balance"]}


def days_ago(days: int) -> datetime:
    """Midnight UTC `days` days ago: inside intake's backdating window."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def test_the_trial_balance_counts_what_was_effective_by_then(engine, tenant):
    day = days_ago(12)
    run_backdated(engine, tenant.id, "topup", day, user_id="alice", amount=1000)
    run_backdated(engine, tenant.id, "spend", day + timedelta(hours=5), user_id="alice",
                  amount=300)  # fmt: skip
    run_backdated(engine, tenant.id, "bonus", day + timedelta(days=1), user_id="bob",
                  amount=40, bonus_type="welcome")  # fmt: skip

    before = report_balances(engine, tenant.id, day - timedelta(seconds=1))
    midday = report_balances(engine, tenant.id, day + timedelta(hours=5))
    later = report_balances(engine, tenant.id, day + timedelta(days=2))

    assert {k: v for k, v in before.items() if v} == {}
    assert {k: v for k, v in midday.items() if v} == {
        "@topup": -1000, "@revenue": 300, "wallets": 700,
    }  # fmt: skip
    assert {k: v for k, v in later.items() if v} == {
        "@topup": -1000, "@revenue": 300, "@bonus": -40, "wallets": 740,
    }  # fmt: skip


def test_movements_sum_wallet_credits_and_debits_per_day_and_type(engine, tenant):
    day = days_ago(8)
    made = [
        ("topup", day + timedelta(hours=1), {"user_id": "alice", "amount": 500}),
        ("topup", day + timedelta(hours=9), {"user_id": "bob", "amount": 200}),
        ("spend", day + timedelta(hours=10), {"user_id": "alice", "amount": 120}),
        ("transfer", day + timedelta(days=1, hours=2),
         {"user_id": "alice", "to_user_id": "bob", "amount": 30}),
        ("topup", day + timedelta(days=3), {"user_id": "carol", "amount": 1}),  # after `to`
    ]  # fmt: skip
    for type_, effective_at, fields in made:
        run_backdated(engine, tenant.id, type_, effective_at, **fields)

    with engine.connect() as conn:
        report = movements(conn, tenant.id, "EUR", day, day + timedelta(days=3), "day")
        hourly = movements(conn, tenant.id, "EUR", day, day + timedelta(hours=2), "hour")

    def moved(amount: int, count: int) -> dict[str, int]:
        return {"amount": amount, "count": count}

    assert report["buckets"] == [
        {"start": day.isoformat(), "types": [
            {"type": "spend", "credits": moved(0, 0), "debits": moved(120, 1)},
            {"type": "topup", "credits": moved(700, 2), "debits": moved(0, 0)},
        ]},
        {"start": (day + timedelta(days=1)).isoformat(), "types": [
            {"type": "transfer", "credits": moved(30, 1), "debits": moved(30, 1)},
        ]},
    ]  # fmt: skip
    assert hourly["buckets"] == [
        {"start": (day + timedelta(hours=1)).isoformat(), "types": [
            {"type": "topup", "credits": moved(500, 1), "debits": moved(0, 0)},
        ]},
    ]  # fmt: skip


def load(engine: Engine, tenant_id: uuid.UUID, rounds: int, seed: int) -> None:
    """Top-ups and spends of a few users, accepted by intake and posted by the engine."""
    rng = random.Random(seed)
    for _ in range(rounds):
        requests = [
            TransactionRequest(
                type=rng.choice(["topup", "spend"]),
                user_id=rng.choice(["u1", "u2", "u3", "u4"]),
                asset_code="EUR",
                amount=rng.randint(1, 50),
                reference_id=uuid.uuid4().hex,
            ).validated()
            for _ in range(5)
        ]
        with unit_of_work(engine) as work:
            results = accept_transactions(work, tenant_id, requests, admin=True)
        post_transactions(engine, [result.id for result in results])  # type: ignore[union-attr]


def test_the_trial_balance_sums_to_zero_at_any_time_under_concurrent_posting(engine, tenant):
    start = datetime.now(UTC)
    run(engine, tenant.id, "topup", user_id="u1", amount=1000)
    threads = [
        threading.Thread(target=load, args=(engine, tenant.id, 15, seed)) for seed in range(3)
    ]
    for thread in threads:
        thread.start()
    rng = random.Random(7)
    reports = 0
    while any(thread.is_alive() for thread in threads) or reports < 20:
        as_of = start + timedelta(seconds=rng.uniform(-5, 10))
        balances = report_balances(engine, tenant.id, as_of)
        assert balances["total"] == 0, balances
        reports += 1
    for thread in threads:
        thread.join()
    assert report_balances(engine, tenant.id, datetime.now(UTC) + timedelta(hours=1))["wallets"] > 0


def test_verify_catches_a_forged_snapshot_and_an_entry_recorded_into_a_closed_period(
    engine, tenant
):
    now = datetime.now(UTC)
    run_backdated(engine, tenant.id, "topup", now - timedelta(hours=3), user_id="alice",
                  amount=100)  # fmt: skip
    with unit_of_work(engine) as work:
        close_period(work, tenant.id, now - timedelta(hours=2), actor=OPERATOR)

    with engine.connect() as conn:
        alice = conn.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND owner = 'alice'"),
            {"t": tenant.id},
        ).scalar_one()
        conn.execute(
            text("UPDATE balance_snapshots SET balance = balance + 1 WHERE account_id = :a"),
            {"a": alice},
        )
        transaction_id = conn.execute(
            text("SELECT transaction_id FROM entries WHERE account_id = :a"), {"a": alice}
        ).scalar_one()
        conn.execute(
            text(
                """
                INSERT INTO entries (tenant_id, transaction_id, account_id, amount,
                                     balance_after, account_version, created_at, effective_at)
                VALUES (:t, :x, :a, 1, 101, 1000, now(), :effective)
                """
            ),
            {
                "t": tenant.id,
                "x": transaction_id,
                "a": alice,
                "effective": now - timedelta(hours=4),
            },
        )
        report = verify_ledger(conn, tenant.id)
        conn.rollback()

    failing = {check.name: check.violations for check in report.checks if not check.ok}
    [(subject, detail)] = failing[
        "balance snapshots equal the sum of the entries effective through them"
    ]
    assert subject.startswith(f"snapshot close of account {alice} through ")
    assert detail == "balance 101 of 1 entries, entries sum to 101 of 2"
    assert len(failing["nothing was recorded into a closed period"]) == 1
    assert len(failing["no entry effective within a balance snapshot was recorded after it"]) == 1
    with engine.connect() as conn:
        assert verify_ledger(conn, tenant.id).ok
