"""A reference id names one transaction per tenant, however often and however fast it is sent."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.errors import IdempotencyKeyReused
from ledger.intake import Submission
from ledger.posting import post_transactions
from ledger.tenants import create_tenant
from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import balance, submit


def rows_with_reference(engine: Engine, tenant_id: uuid.UUID, reference_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND reference_id = :r"),
            {"t": tenant_id, "r": reference_id},
        ).scalar_one()


TOPUP: dict[str, Any] = {
    "user_id": "alice",
    "amount": 500,
    "payment_method": "card",
    "metadata": {"order": "A-1"},
}
TRANSFER: dict[str, Any] = {"user_id": "alice", "to_user_id": "bob", "amount": 5}


@pytest.fixture(autouse=True)
def leave_nothing_queued(engine: Engine, tenant) -> Iterator[None]:
    """Apply what a test only submitted, so no later worker finds it waiting."""
    yield
    with engine.connect() as conn:
        queued = list(
            conn.execute(
                text("SELECT id FROM transactions WHERE tenant_id = :t AND status = 'queued'"),
                {"t": tenant.id},
            ).scalars()
        )
    post_transactions(engine, queued)


def test_resubmitting_the_same_request_returns_the_same_transaction(engine, tenant):
    first = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)
    again = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)

    assert (first.replayed, again.replayed) == (False, True)
    assert again.id == first.id
    assert again.transaction == first.transaction
    assert rows_with_reference(engine, tenant.id, "order-1") == 1


def test_a_replay_after_applying_shows_the_outcome_without_applying_twice(engine, tenant):
    first = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)
    post_transactions(engine, [first.id])

    again = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)
    post_transactions(engine, [again.id])

    assert again.replayed
    assert again.transaction["status"] == "applied"
    assert again.transaction["balance_after"] == 500
    assert balance(engine, tenant.id, "alice") == 500


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 501},
        {"user_id": "bob"},
        {"payment_method": "bank"},
        {"metadata": {"order": "A-2"}},
        {"asset_code": "GOLD"},
    ],
)
def test_reusing_a_reference_for_a_different_request_is_refused(engine, tenant, change):
    with unit_of_work(engine) as work:
        create_asset(work, tenant.id, "GOLD", "Gold", 0)
    first = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)

    with pytest.raises(IdempotencyKeyReused) as caught:
        submit(engine, tenant.id, "topup", reference_id="order-1", **{**TOPUP, **change})

    assert caught.value.code == "idempotency_key_reused"
    assert caught.value.field == "reference_id"
    assert rows_with_reference(engine, tenant.id, "order-1") == 1
    assert submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP).id == first.id


def test_reusing_a_reference_for_another_type_is_refused(engine, tenant):
    submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)

    with pytest.raises(IdempotencyKeyReused):
        submit(engine, tenant.id, "bonus", reference_id="order-1", **TOPUP)


def test_references_are_scoped_to_their_tenant(engine, tenant):
    with unit_of_work(engine) as work:
        other = create_tenant(work, "other")
        create_asset(work, other, "EUR", "Euro", 2)

    mine = submit(engine, tenant.id, "topup", reference_id="order-1", **TOPUP)
    theirs = submit(engine, other, "topup", reference_id="order-1", **{**TOPUP, "amount": 7})

    assert not theirs.replayed
    assert theirs.id != mine.id
    post_transactions(engine, [mine.id, theirs.id])
    assert (balance(engine, tenant.id, "alice"), balance(engine, other, "alice")) == (500, 7)
    with engine.connect() as conn:
        assert verify_ledger(conn, other).ok


def test_fifty_concurrent_identical_submissions_create_exactly_one_transaction(engine, tenant):
    start = threading.Barrier(50, timeout=30)

    def send(_: int) -> Submission:
        start.wait()
        return submit(engine, tenant.id, "transfer", reference_id="race", **TRANSFER)

    with ThreadPoolExecutor(50) as pool:
        submissions = list(pool.map(send, range(50)))

    assert len({s.id for s in submissions}) == 1
    assert sorted(s.replayed for s in submissions) == [False] + [True] * 49
    assert rows_with_reference(engine, tenant.id, "race") == 1
    result = post_transactions(engine, [s.id for s in submissions])
    assert [(o.status, o.code) for o in result.outcomes] == [("rejected", "wallet_not_found")]
    with engine.connect() as conn:
        wallets = conn.execute(
            text("SELECT count(*) FROM accounts WHERE tenant_id = :t AND NOT is_system"),
            {"t": tenant.id},
        ).scalar_one()
    assert wallets == 1  # the target wallet, created once


def test_concurrent_conflicting_submissions_leave_one_winner_and_refuse_the_rest(engine, tenant):
    start = threading.Barrier(20, timeout=30)

    def send(amount: int) -> Submission | IdempotencyKeyReused:
        start.wait()
        try:
            return submit(
                engine, tenant.id, "topup", reference_id="race", user_id="alice", amount=amount
            )
        except IdempotencyKeyReused as error:
            return error

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(send, [1 + n % 2 for n in range(20)]))

    winners = [o for o in outcomes if isinstance(o, Submission)]
    refused = [o for o in outcomes if isinstance(o, IdempotencyKeyReused)]
    assert len({w.id for w in winners}) == 1
    assert len([w for w in winners if not w.replayed]) == 1
    # The ten that sent the winner's body were replays; the ten that did not, refused.
    assert (len(winners), len(refused)) == (10, 10)
    assert rows_with_reference(engine, tenant.id, "race") == 1
