"""Many transactions per commit: each still judged alone, in acceptance order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.errors import TransactionNotFailed
from ledger.posting import BatchResult, post_transactions
from ledger.queue import requeue_transaction
from ledger.tenants import create_tenant
from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import balance, status, submit


def drain(engine: Engine) -> None:
    """Apply whatever earlier tests left queued, so `fill_to` claims only ours."""
    while post_transactions(engine, [], fill_to=500).outcomes:
        pass


def queued_count(engine: Engine, tenant_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND status = 'queued'"),
            {"t": tenant_id},
        ).scalar_one()


def journal(engine: Engine, tenant_id: uuid.UUID) -> list[tuple[str, int, int, int]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT a.owner, e.account_version, e.amount, e.balance_after FROM entries e"
                    " JOIN accounts a ON a.id = e.account_id WHERE e.tenant_id = :t"
                    " ORDER BY e.id"
                ),
                {"t": tenant_id},
            )
        ]


def test_a_rejection_in_the_middle_of_a_batch_leaves_its_neighbours_applied(engine, tenant):
    top = submit(engine, tenant.id, "topup", user_id="alice", amount=100).id
    first = submit(engine, tenant.id, "spend", user_id="alice", amount=60).id
    middle = submit(engine, tenant.id, "spend", user_id="alice", amount=60).id
    last = submit(engine, tenant.id, "spend", user_id="alice", amount=40).id

    result = post_transactions(engine, [top, first, middle, last])

    assert [(o.transaction_id, o.status, o.code) for o in result.outcomes] == [
        (top, "applied", None),
        (first, "applied", None),
        (middle, "rejected", "insufficient_funds"),
        (last, "applied", None),
    ]
    assert balance(engine, tenant.id, "alice") == 0
    assert status(engine, tenant.id, last)["balance_after"] == 0
    assert status(engine, tenant.id, first)["balance_after"] == 40


def test_a_batch_applies_in_acceptance_order_whatever_order_it_is_given(engine, tenant):
    top = submit(engine, tenant.id, "topup", user_id="alice", amount=10).id
    spend = submit(engine, tenant.id, "spend", user_id="alice", amount=10).id

    result = post_transactions(engine, [spend, top])

    assert [(o.transaction_id, o.status) for o in result.outcomes] == [
        (top, "applied"),
        (spend, "applied"),
    ]


def scenario(spends: dict[str, uuid.UUID]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, type, fields): refunds name the spends submitted before them."""
    yield "fund", "topup", {"user_id": "alice", "amount": 100}
    yield "s1", "spend", {"user_id": "alice", "amount": 30}
    yield "s2", "spend", {"user_id": "alice", "amount": 100}  # insufficient
    yield (
        "r1",
        "refund",
        {"user_id": "alice", "amount": 20, "original_transaction_id": spends["s1"]},
    )
    yield "r2", "refund", {"user_id": "alice", "amount": 5, "original_transaction_id": spends["s2"]}
    yield (
        "r3",
        "refund",
        {"user_id": "alice", "amount": 20, "original_transaction_id": spends["s1"]},
    )
    yield "t1", "transfer", {"user_id": "alice", "to_user_id": "bob", "amount": 50}
    yield "b1", "bonus", {"user_id": "bob", "amount": 10, "bonus_type": "WELCOME"}
    yield "s3", "spend", {"user_id": "bob", "amount": 61}  # insufficient
    yield "a1", "adjustment", {"user_id": "bob", "amount": -60, "reason": "chargeback"}
    yield "s4", "spend", {"user_id": "ghost", "amount": 1}  # no wallet
    yield (
        "r4",
        "refund",
        {"user_id": "alice", "amount": 10, "original_transaction_id": spends["s1"]},
    )
    yield "t2", "transfer", {"user_id": "alice", "to_user_id": "carol", "amount": 50}
    yield "t3", "transfer", {"user_id": "alice", "to_user_id": "carol", "amount": 1}


def play(engine: Engine, apply: Callable[[Engine, list[uuid.UUID]], None]) -> dict[str, Any]:
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, "batch-equivalence")
        create_asset(work, tenant_id, "EUR", "Euro", 2)
    ids: dict[str, uuid.UUID] = {}
    for name, type, fields in scenario(ids):
        ids[name] = submit(engine, tenant_id, type, **fields).id
    apply(engine, list(ids.values()))
    views = {name: status(engine, tenant_id, i) for name, i in ids.items()}
    with engine.connect() as conn:
        assert verify_ledger(conn, tenant_id).ok
    return {
        "outcomes": {
            name: (v["status"], v["result"], v["balance_after"], v.get("to_balance_after"))
            for name, v in views.items()
        },
        "balances": {u: balance(engine, tenant_id, u) for u in ("alice", "bob", "carol")},
        "journal": sorted(journal(engine, tenant_id)),
    }


def one_batch(engine: Engine, ids: list[uuid.UUID]) -> None:
    result = post_transactions(engine, ids)
    assert len(result.outcomes) == len(ids)


def one_at_a_time(engine: Engine, ids: list[uuid.UUID]) -> None:
    for transaction_id in ids:
        assert len(post_transactions(engine, [transaction_id]).outcomes) == 1


def test_one_batch_gives_exactly_the_results_of_one_transaction_at_a_time(engine):
    batched = play(engine, one_batch)
    serial = play(engine, one_at_a_time)

    assert batched == serial
    codes = {name: o[1]["code"] if o[1] else o[0] for name, o in serial["outcomes"].items()}
    assert codes == {
        "fund": "applied",
        "s1": "applied",
        "s2": "insufficient_funds",
        "r1": "applied",
        "r2": "original_not_applied",
        "r3": "refund_exceeds_original",
        "t1": "applied",
        "b1": "applied",
        "s3": "insufficient_funds",
        "a1": "applied",
        "s4": "wallet_not_found",
        "r4": "applied",
        "t2": "applied",
        "t3": "insufficient_funds",
    }
    assert serial["balances"] == {"alice": 0, "bob": 0, "carol": 50}


def test_redelivered_transactions_are_skipped_without_touching_the_ledger(engine, tenant):
    ids = [submit(engine, tenant.id, "topup", user_id="alice", amount=10).id for _ in range(3)]
    post_transactions(engine, ids[:2])
    before = journal(engine, tenant.id)

    again = post_transactions(engine, [*ids, ids[0]])

    assert [(o.transaction_id, o.status) for o in again.outcomes] == [(ids[2], "applied")]
    assert again.skipped == ids[:2]
    assert journal(engine, tenant.id)[: len(before)] == before
    assert balance(engine, tenant.id, "alice") == 30
    assert post_transactions(engine, ids) == BatchResult(outcomes=[], skipped=ids)
    with engine.connect() as conn:
        events = conn.execute(
            text("SELECT count(*) FROM events WHERE transaction_id = ANY(:ids)"), {"ids": ids}
        ).scalar_one()
    assert events == 3


def test_unknown_ids_are_skipped(engine, tenant):
    stranger = uuid.uuid4()
    assert post_transactions(engine, [stranger]) == BatchResult(skipped=[stranger])


def test_fill_to_claims_the_oldest_queued_transactions_up_to_the_batch_size(engine, tenant):
    drain(engine)
    ids = [submit(engine, tenant.id, "topup", user_id="alice", amount=1).id for _ in range(6)]

    result = post_transactions(engine, [ids[4]], fill_to=3)

    assert [o.transaction_id for o in result.outcomes] == [ids[0], ids[1], ids[4]]
    assert queued_count(engine, tenant.id) == 3
    rest = post_transactions(engine, [], fill_to=10)
    assert [o.transaction_id for o in rest.outcomes] == [ids[2], ids[3], ids[5]]
    assert balance(engine, tenant.id, "alice") == 6


@pytest.fixture
def poison(engine: Engine) -> Iterator[str]:
    """A wallet the database refuses to credit past 1000: a system fault, not a business rule."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE accounts ADD CONSTRAINT test_poison"
                " CHECK (owner <> 'poison' OR balance < 1000) NOT VALID"
            )
        )
    try:
        yield "poison"
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE accounts DROP CONSTRAINT IF EXISTS test_poison"))


def test_a_system_fault_in_one_transaction_does_not_stop_the_rest_of_its_batch(
    engine, tenant, poison
):
    before = submit(engine, tenant.id, "topup", user_id="alice", amount=5).id
    bad = submit(engine, tenant.id, "topup", user_id=poison, amount=1000).id
    after = submit(engine, tenant.id, "topup", user_id="alice", amount=7).id

    result = post_transactions(engine, [before, bad, after], max_attempts=2)

    assert [(o.transaction_id, o.status) for o in result.outcomes] == [
        (before, "applied"),
        (after, "applied"),
    ]
    assert result.skipped == [bad]
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, attempts, last_error FROM transactions WHERE id = :id"),
            {"id": bad},
        ).one()
    assert (row.status, row.attempts) == ("queued", 1)
    assert "test_poison" in row.last_error
    # Retried only once its backoff has passed, then given up on.
    assert post_transactions(engine, [bad], max_attempts=2).skipped == [bad]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE transactions SET next_attempt_at = now() WHERE id = :id"), {"id": bad}
        )
    final = post_transactions(engine, [bad], max_attempts=2)

    assert [(o.status, o.code) for o in final.outcomes] == [("failed", "processing_failed")]
    failed = status(engine, tenant.id, bad)
    assert failed["status"] == "failed"
    assert failed["result"]["code"] == "processing_failed"
    assert balance(engine, tenant.id, "alice") == 12
    assert balance(engine, tenant.id, poison) == 0


def test_a_failed_transaction_can_be_requeued_and_then_applied(engine, tenant, poison):
    bad = submit(engine, tenant.id, "topup", user_id=poison, amount=1000).id
    post_transactions(engine, [bad], max_attempts=1)
    assert status(engine, tenant.id, bad)["status"] == "failed"
    with engine.begin() as conn:  # the operator fixes the fault
        conn.execute(text("ALTER TABLE accounts DROP CONSTRAINT test_poison"))

    with unit_of_work(engine) as work:
        assert requeue_transaction(work, tenant.id, bad, actor=OPERATOR)["status"] == "queued"
    with pytest.raises(TransactionNotFailed), unit_of_work(engine) as work:
        requeue_transaction(work, tenant.id, bad, actor=OPERATOR)  # only a failed one
    result = post_transactions(engine, [bad])

    assert result.status_of(bad) == "applied"
    assert balance(engine, tenant.id, poison) == 1000
    with engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT type FROM events WHERE transaction_id = :id ORDER BY created_at"),
            {"id": bad},
        ).scalars()
        assert list(kinds) == ["transaction.failed", "transaction.applied"]


def test_a_worker_batch_leaves_a_spend_queued_while_its_funding_topup_is_held_elsewhere(
    engine, tenant
):
    drain(engine)
    topup = submit(engine, tenant.id, "topup", user_id="ordered", amount=100).id
    spend = submit(engine, tenant.id, "spend", user_id="ordered", amount=60).id
    unrelated = submit(engine, tenant.id, "topup", user_id="elsewhere", amount=5).id

    # Another session holds the top-up's row, as a worker applying it (or the relay tagging
    # it) does: the batch must not let the later spend overtake it.
    with engine.connect() as other:
        other.execute(text("SELECT 1 FROM transactions WHERE id = :id FOR UPDATE"), {"id": topup})
        held = post_transactions(engine, [spend], fill_to=50, in_order=True)
        other.rollback()

    assert held.deferred == [spend]
    assert [(o.transaction_id, o.status) for o in held.outcomes] == [(unrelated, "applied")]
    assert status(engine, tenant.id, spend)["status"] == "queued"

    released = post_transactions(engine, [spend], fill_to=50, in_order=True)

    assert [(o.transaction_id, o.status) for o in released.outcomes] == [
        (topup, "applied"),
        (spend, "applied"),
    ]
    assert balance(engine, tenant.id, "ordered") == 40
    with engine.connect() as conn:
        assert verify_ledger(conn).ok
