"""The bench's seeded wallet history (ledger/history_seed.py) is a ledger the posting engine
could have written: invariants hold, versions and running balances are exact, checkpoints
equal the entries they cover, and balances as of any moment match a plain recount."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from ledger.checkpoints import CHECKPOINT_EVERY
from ledger.db import unit_of_work
from ledger.history_seed import SeededHistory, effective_times_at, seed_wallet_history
from ledger.ledger_time import balances_as_of
from ledger.verify import verify_ledger
from tests.conftest import TenantFixture

MOVEMENTS = 3_000


@dataclass(frozen=True)
class Line:
    amount: int
    balance_after: int
    version: int
    recorded_at: datetime
    effective_at: datetime


def lines_of(engine: Engine, account_id: int) -> list[Line]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT amount, balance_after, account_version, created_at, effective_at"
                " FROM entries WHERE account_id = :a ORDER BY account_version"
            ),
            {"a": account_id},
        )
        return [Line(*row) for row in rows]


def recount(lines: list[Line], as_of: datetime, known_at: datetime | None = None) -> int:
    """The balance as of `as_of` (known at `known_at`) counted from every line, the slow way."""
    return sum(
        line.amount
        for line in lines
        if line.effective_at <= as_of and (known_at is None or line.recorded_at <= known_at)
    )


def seed(engine: Engine, tenant: TenantFixture, **options: object) -> SeededHistory:
    with unit_of_work(engine) as work:
        return seed_wallet_history(
            work.connection, tenant.id, tenant.asset, "history", MOVEMENTS, **options
        )


@pytest.mark.parametrize(
    "options",
    [{}, {"backdated_share": 0.3, "max_backdate": timedelta(days=10)}],
    ids=["bench-defaults", "heavily-backdated"],
)
def test_a_seeded_history_is_exact_and_reads_as_of_any_moment_like_a_recount(
    engine: Engine, tenant: TenantFixture, options: dict[str, object]
) -> None:
    seeded = seed(engine, tenant, **options)

    with engine.connect() as conn:
        assert verify_ledger(conn, tenant.id).ok
    wallet, topup = lines_of(engine, seeded.wallet_id), lines_of(engine, seeded.topup_id)
    assert [line.version for line in wallet] == list(range(1, MOVEMENTS + 1))
    running = 0
    for line in wallet:
        running += line.amount
        assert line.amount > 0 and line.balance_after == running
    assert seeded.balance == running
    assert [(t.amount, t.balance_after) for t in topup] == [
        (-w.amount, -w.balance_after) for w in wallet
    ]
    recorded = [line.recorded_at for line in wallet]
    assert recorded == sorted(recorded) and len(set(recorded)) == MOVEMENTS
    now = datetime.now(UTC)
    assert now - timedelta(days=30, minutes=1) < min(line.effective_at for line in wallet)
    assert max(recorded) <= now
    backdated = [line for line in wallet if line.effective_at < line.recorded_at]
    assert len(backdated) == seeded.backdated > 0
    assert all(line.effective_at == line.recorded_at for line in wallet if line not in backdated)

    with engine.connect() as conn:
        snapshots = conn.execute(
            text(
                "SELECT account_id, kind, effective_through, recorded_through, balance,"
                " entry_count FROM balance_snapshots WHERE account_id = ANY(:ids)"
                " ORDER BY account_id, effective_through"
            ),
            {"ids": [seeded.wallet_id, seeded.topup_id]},
        ).all()
    marks = [wallet[n - 1].recorded_at for n in range(CHECKPOINT_EVERY, MOVEMENTS + 1, 1000)]
    assert seeded.checkpoints == len(marks) == MOVEMENTS // CHECKPOINT_EVERY
    for account_id, lines, sign in ((seeded.wallet_id, wallet, 1), (seeded.topup_id, topup, -1)):
        mine = [s for s in snapshots if s.account_id == account_id]
        assert [s.effective_through for s in mine] == marks
        for snapshot in mine:
            covered = [line for line in lines if line.effective_at <= snapshot.effective_through]
            assert snapshot.kind == "checkpoint"
            assert snapshot.balance == sum(line.amount for line in covered)
            assert sign * snapshot.balance >= 0
            assert snapshot.entry_count == len(covered)
            assert snapshot.recorded_through == max(line.recorded_at for line in covered)

    rng = random.Random(7)
    first, last = wallet[0].effective_at, max(recorded)
    span = (last - first).total_seconds()
    moments = [first + timedelta(seconds=rng.uniform(-60, span + 60)) for _ in range(200)]
    moments += [line.effective_at for line in rng.sample(wallet, 50)]
    with engine.connect() as conn:
        for as_of in moments:
            known_at = rng.choice([None, as_of + timedelta(seconds=rng.uniform(-3600, 86400))])
            read = balances_as_of(conn, [seeded.wallet_id, seeded.topup_id], as_of, known_at)
            expected = recount(wallet, as_of, known_at)
            assert read == {seeded.wallet_id: expected, seeded.topup_id: -expected}


def test_positions_in_effective_order_name_the_entries_there(
    engine: Engine, tenant: TenantFixture
) -> None:
    seeded = seed(engine, tenant)
    in_effective_order = sorted(line.effective_at for line in lines_of(engine, seeded.wallet_id))

    with engine.connect() as conn:
        found = effective_times_at(conn, seeded.wallet_id, [1, 500, MOVEMENTS])

    assert found == {
        1: in_effective_order[0],
        500: in_effective_order[499],
        MOVEMENTS: in_effective_order[-1],
    }


def test_a_wallet_that_already_moved_is_not_seeded_again(
    engine: Engine, tenant: TenantFixture
) -> None:
    seed(engine, tenant)

    with pytest.raises(ValueError, match="must not have moved"):
        seed(engine, tenant)
    assert len(lines_of(engine, seed_wallet_id(engine, tenant))) == MOVEMENTS


def seed_wallet_id(engine: Engine, tenant: TenantFixture) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND owner = 'history'"),
            {"t": tenant.id},
        ).scalar_one()
