"""Closing periods (ledger/periods.py): snapshots of every account as of `through`, closes
that move forward only, and the advisory-lock protocol with intake under real concurrency."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.errors import InvalidRequest, LedgerError
from ledger.periods import PeriodAlreadyClosed, PeriodNotQuiet, close_period, list_periods
from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import apply
from tests.integration.ledger.period_helpers import (
    accept_backdated,
    run_backdated,
    submit_backdated,
)


def close(engine: Engine, tenant_id: uuid.UUID, through: datetime) -> dict[str, Any]:
    with unit_of_work(engine) as work:
        return close_period(work, tenant_id, through, actor=OPERATOR)


def snapshots(engine: Engine, tenant_id: uuid.UUID, through: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT a.owner, s.balance FROM balance_snapshots s
                JOIN accounts a ON a.id = s.account_id
                WHERE s.tenant_id = :t AND s.kind = 'close' AND s.effective_through = :through
                """
            ),
            {"t": tenant_id, "through": through},
        )
        return {owner: int(balance) for owner, balance in rows}


def closed_through(engine: Engine, tenant_id: uuid.UUID) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT closed_through FROM tenants WHERE id = :t"), {"t": tenant_id}
        ).scalar_one()


def test_a_close_is_refused_while_a_backdated_transaction_is_queued(engine, tenant):
    now = datetime.now(UTC)
    queued = submit_backdated(engine, tenant.id, "topup", now - timedelta(hours=2),
                              user_id="alice", amount=100)  # fmt: skip

    with pytest.raises(PeriodNotQuiet) as refused:
        close(engine, tenant.id, now - timedelta(hours=1))

    assert refused.value.code == "period_not_quiet"
    assert closed_through(engine, tenant.id) is None
    apply(engine, queued)
    assert close(engine, tenant.id, now - timedelta(hours=1))["summary"]["EUR"]["wallets"] == {
        "balance": 100,
        "accounts": 1,
    }


def test_a_close_snapshots_every_account_as_of_through(engine, tenant):
    now = datetime.now(UTC)
    through = now - timedelta(hours=1)
    run_backdated(engine, tenant.id, "topup", now - timedelta(hours=3), user_id="alice",
                  amount=1000)  # fmt: skip
    run_backdated(engine, tenant.id, "topup", now - timedelta(hours=3), user_id="bob", amount=500)
    run_backdated(engine, tenant.id, "spend", now - timedelta(hours=2), user_id="alice",
                  amount=200)  # fmt: skip
    run_backdated(engine, tenant.id, "spend", through, user_id="bob", amount=50)  # at: counts
    run_backdated(engine, tenant.id, "topup", now - timedelta(minutes=30), user_id="carol",
                  amount=70)  # fmt: skip
    run_backdated(engine, tenant.id, "spend", now - timedelta(minutes=20), user_id="alice",
                  amount=5)  # fmt: skip

    closed = close(engine, tenant.id, through)

    # Restated by hand: what each account held counting only what was effective by then.
    expected = {"alice": 800, "bob": 450, "carol": 0, "@topup": -1500, "@revenue": 250}
    with engine.connect() as conn:
        every_account = conn.execute(
            text("SELECT owner FROM accounts WHERE tenant_id = :t"), {"t": tenant.id}
        ).scalars()
        expected |= {owner: 0 for owner in every_account if owner not in expected}
    assert snapshots(engine, tenant.id, through) == expected
    assert closed_through(engine, tenant.id) == through
    summary = closed["summary"]["EUR"]
    assert summary["wallets"] == {"balance": 1250, "accounts": 3}
    assert {line["name"]: line["balance"] for line in summary["system_accounts"]} == {
        owner: balance for owner, balance in expected.items() if owner.startswith("@")
    }
    assert summary["total"] == {"balance": 0}
    assert (summary["entries"], summary["entries_in_period"]) == (8, 8)
    with engine.connect() as conn:
        assert list_periods(conn, tenant.id) == [closed]


def test_closes_move_forward_only(engine, tenant):
    now = datetime.now(UTC)
    run_backdated(engine, tenant.id, "topup", now - timedelta(hours=5), user_id="alice",
                  amount=10)  # fmt: skip
    first = close(engine, tenant.id, now - timedelta(hours=4))
    run_backdated(engine, tenant.id, "topup", now - timedelta(hours=3), user_id="alice",
                  amount=20)  # fmt: skip

    for through in (now - timedelta(hours=4), now - timedelta(hours=6)):
        with pytest.raises(PeriodAlreadyClosed):
            close(engine, tenant.id, through)
    for through in (now, now + timedelta(days=1)):
        with pytest.raises(InvalidRequest) as refused:
            close(engine, tenant.id, through)
        assert refused.value.code == "invalid_through"
    second = close(engine, tenant.id, now - timedelta(hours=2))

    assert closed_through(engine, tenant.id) == now - timedelta(hours=2)
    with engine.connect() as conn:
        assert [p["id"] for p in list_periods(conn, tenant.id)] == [second["id"], first["id"]]
    assert (second["summary"]["EUR"]["entries"], second["summary"]["EUR"]["entries_in_period"]) == (
        4,
        2,
    )
    with pytest.raises(LedgerError) as refused:
        submit_backdated(engine, tenant.id, "topup", now - timedelta(hours=3), user_id="alice",
                         amount=1)  # fmt: skip
    assert refused.value.code == "period_closed"


def race(engine: Engine, tenant_id: uuid.UUID, through: datetime) -> dict[str, Any]:
    """Start a submission effective just before `through` and a close through it together:
    each one's result, or its refusal's code."""
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def submit() -> None:
        barrier.wait()
        try:
            with unit_of_work(engine) as work:
                results["submission"] = accept_backdated(
                    work, tenant_id, "spend", through - timedelta(seconds=1),
                    user_id="alice", amount=1,
                )  # fmt: skip
        except LedgerError as error:
            results["submission"] = error.code

    def closer() -> None:
        barrier.wait()
        try:
            results["close"] = close(engine, tenant_id, through)["through"]
        except LedgerError as error:
            results["close"] = error.code

    threads = [threading.Thread(target=submit), threading.Thread(target=closer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_close_racing_a_backdated_submission_lets_exactly_one_through(engine, tenant):
    """Each round, a submission effective just before `through` and the close start
    together: one of them is refused, and never is a queued row left in a closed period."""
    start = datetime.now(UTC) - timedelta(hours=2)
    run_backdated(engine, tenant.id, "topup", start - timedelta(hours=1), user_id="alice",
                  amount=1000)  # fmt: skip
    for round_ in range(12):
        through = start + timedelta(minutes=round_)

        results = race(engine, tenant.id, through)

        submitted = isinstance(results["submission"], uuid.UUID)
        closed = results["close"] == through.isoformat()
        assert submitted != closed, results
        assert closed or results["close"] == "period_not_quiet", results
        assert submitted or results["submission"] == "period_closed", results
        with engine.connect() as conn:
            in_closed_period = conn.execute(
                text(
                    """
                    SELECT count(*) FROM transactions x JOIN tenants t ON t.id = x.tenant_id
                    WHERE t.id = :t AND x.status = 'queued'
                      AND x.effective_at <= t.closed_through
                    """
                ),
                {"t": tenant.id},
            ).scalar_one()
        assert in_closed_period == 0
        if submitted:
            apply(engine, results["submission"])
    with engine.connect() as conn:
        assert verify_ledger(conn, tenant.id).ok
