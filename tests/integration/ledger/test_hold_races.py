"""Real threads against real PostgreSQL: captures, voids and expiry race for one hold, and
holds race for one wallet's funds; exactly one outcome wins, and pending always matches."""

from __future__ import annotations

import uuid
from collections import Counter
from functools import partial

from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.holds import expire_due_holds
from ledger.posting import post_transactions
from ledger.queries import get_balance
from tests.integration.ledger.helpers import run, status, submit
from tests.integration.ledger.test_concurrency import all_at_once, statuses


def wallet(engine: Engine, tenant_id: uuid.UUID, user_id: str = "alice") -> tuple[int, int]:
    with unit_of_work(engine) as work:
        found = get_balance(work.connection, tenant_id, user_id, "EUR")
    return found["balance"], found["pending"]


def applied_hold(engine: Engine, tenant_id: uuid.UUID, amount: int) -> uuid.UUID:
    held = run(engine, tenant_id, "hold", user_id="alice", amount=amount)
    assert held["status"] == "applied"
    return uuid.UUID(held["id"])


def test_fifty_concurrent_captures_of_one_hold_apply_exactly_one(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    hold_id = applied_hold(engine, tenant.id, 400)
    captures = [
        submit(engine, tenant.id, "capture", original_transaction_id=hold_id).id for _ in range(50)
    ]

    all_at_once(lambda capture: post_transactions(engine, [capture]), captures)

    assert Counter(statuses(engine, captures)) == {
        ("applied", None): 1,
        ("rejected", "hold_not_active"): 49,
    }
    assert wallet(engine, tenant.id) == (600, 0)
    assert status(engine, tenant.id, hold_id)["hold"]["status"] == "captured"


def test_capture_void_and_expiry_racing_for_one_hold_have_one_winner(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    for round_number in range(10):
        hold_id = applied_hold(engine, tenant.id, 100)
        capture = submit(engine, tenant.id, "capture", original_transaction_id=hold_id).id
        void = submit(engine, tenant.id, "void", original_transaction_id=hold_id).id
        # Due about when the three start: the sweeper may expire it, unless a capture or
        # void gets there first (they judge by their batch's clock, so a late one is
        # rejected hold_expired). Whoever wins, there is exactly one winner.
        if round_number % 2:
            with unit_of_work(engine) as work:
                work.connection.execute(
                    text(
                        "UPDATE holds SET expires_at = now() + interval '20 milliseconds'"
                        " WHERE transaction_id = :id"
                    ),
                    {"id": hold_id},
                )

        def sweep() -> int:
            with unit_of_work(engine) as work:
                return expire_due_holds(work)

        all_at_once(
            lambda action: action(),
            [
                partial(post_transactions, engine, [capture]),
                partial(post_transactions, engine, [void]),
                sweep,
            ],
        )

        # A capture and a void that came too late are rejected hold_expired even when the
        # sweep in the race looked just before the expiry: the relay's next sweep settles it.
        sweep()
        final = status(engine, tenant.id, hold_id)["hold"]["status"]
        outcomes = dict(zip(("capture", "void"), statuses(engine, [capture, void]), strict=True))
        applied = [kind for kind, (state, _) in outcomes.items() if state == "applied"]
        expected = {"captured": ["capture"], "voided": ["void"], "expired": []}[final]
        assert applied == expected, (final, outcomes)
        balance_now, pending = wallet(engine, tenant.id)
        assert pending == 0
    # Each captured hold took its whole 100.
    assert balance_now == 1000 - 100 * _holds(engine, tenant.id).count("captured")


def _holds(engine: Engine, tenant_id: uuid.UUID) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT status FROM holds WHERE tenant_id = :t"), {"t": tenant_id}
            ).scalars()
        )


def test_one_hundred_concurrent_holds_on_funds_for_forty_hold_exactly_forty(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=40)
    holds = [submit(engine, tenant.id, "hold", user_id="alice", amount=1).id for _ in range(100)]

    all_at_once(lambda hold: post_transactions(engine, [hold]), holds)

    assert Counter(statuses(engine, holds)) == {
        ("applied", None): 40,
        ("rejected", "insufficient_funds"): 60,
    }
    assert wallet(engine, tenant.id) == (40, 40)
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=1)
    assert spend["result"]["code"] == "insufficient_funds"
    outcomes = zip(holds, statuses(engine, holds), strict=True)
    one = next(hold for hold, (state, _) in outcomes if state == "applied")
    run(engine, tenant.id, "void", original_transaction_id=one)
    assert run(engine, tenant.id, "spend", user_id="alice", amount=1)["status"] == "applied"
    assert wallet(engine, tenant.id) == (39, 39)
