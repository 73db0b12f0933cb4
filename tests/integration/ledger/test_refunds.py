"""Refunds return an applied spend of the same wallet, never more than it took."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.posting import post_transactions
from ledger.tenants import create_tenant
from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import balance, run, status, submit


@pytest.fixture
def other_tenant(engine: Engine) -> Iterator[uuid.UUID]:
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, "other-merchant")
        create_asset(work, tenant_id, "EUR", "Euro", 2)
    yield tenant_id
    with engine.connect() as conn:
        report = verify_ledger(conn, tenant_id)
    assert report.ok, "\n".join(report.lines())


def refund(engine: Engine, tenant_id: uuid.UUID, user_id: str, amount: int, original) -> dict:
    original_id = original if isinstance(original, uuid.UUID) else uuid.UUID(original["id"])
    return run(
        engine,
        tenant_id,
        "refund",
        user_id=user_id,
        amount=amount,
        original_transaction_id=original_id,
    )


def code(view: dict) -> str | None:
    return view["result"]["code"] if view["result"] else None


@pytest.fixture
def spend(engine, tenant) -> dict:
    """Alice had 1000 and spent 100 of it."""
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    view = run(engine, tenant.id, "spend", user_id="alice", amount=100, item_id="sku-1")
    assert view["status"] == "applied"
    return view


def test_partial_refunds_may_add_up_to_the_spend_and_no_further(engine, tenant, spend):
    first = refund(engine, tenant.id, "alice", 30, spend)
    second = refund(engine, tenant.id, "alice", 70, spend)
    third = refund(engine, tenant.id, "alice", 1, spend)

    assert [first["status"], second["status"]] == ["applied", "applied"]
    assert code(third) == "refund_exceeds_original"
    assert balance(engine, tenant.id, "alice") == 1000


def test_a_refund_larger_than_what_remains_is_rejected_whole(engine, tenant, spend):
    refund(engine, tenant.id, "alice", 30, spend)

    too_big = refund(engine, tenant.id, "alice", 71, spend)
    rest = refund(engine, tenant.id, "alice", 70, spend)

    assert code(too_big) == "refund_exceeds_original"
    assert rest["status"] == "applied"
    assert balance(engine, tenant.id, "alice") == 1000


def test_a_refund_of_a_rejected_spend_is_rejected(engine, tenant, spend):
    rejected = run(engine, tenant.id, "spend", user_id="alice", amount=10**6)
    assert code(rejected) == "insufficient_funds"

    view = refund(engine, tenant.id, "alice", 1, rejected)

    assert code(view) == "original_not_applied"


def test_a_refund_of_a_spend_not_yet_applied_is_rejected(engine, tenant, spend):
    queued = submit(engine, tenant.id, "spend", user_id="alice", amount=10)

    early = refund(engine, tenant.id, "alice", 10, queued.id)
    post_transactions(engine, [queued.id])
    later = refund(engine, tenant.id, "alice", 10, queued.id)

    assert code(early) == "original_not_applied"
    assert later["status"] == "applied"


def test_a_refund_of_another_wallets_spend_is_rejected(engine, tenant, spend):
    run(engine, tenant.id, "topup", user_id="mallory", amount=1)

    view = refund(engine, tenant.id, "mallory", 100, spend)

    assert code(view) == "original_mismatch"
    assert balance(engine, tenant.id, "mallory") == 1


def test_a_refund_in_another_asset_is_rejected(engine, tenant, spend):
    with unit_of_work(engine) as work:
        create_asset(work, tenant.id, "GOLD", "Gold", 0)
    run(engine, tenant.id, "topup", user_id="alice", amount=1, asset_code="GOLD")

    view = run(
        engine,
        tenant.id,
        "refund",
        user_id="alice",
        amount=100,
        asset_code="GOLD",
        original_transaction_id=uuid.UUID(spend["id"]),
    )

    assert code(view) == "original_mismatch"
    assert balance(engine, tenant.id, "alice", "GOLD") == 1


def test_a_refund_of_another_tenants_spend_is_not_found(engine, tenant, spend, other_tenant):
    run(engine, other_tenant, "topup", user_id="alice", amount=1)

    view = refund(engine, other_tenant, "alice", 100, spend)

    assert code(view) == "original_not_found"
    assert balance(engine, other_tenant, "alice") == 1
    assert balance(engine, tenant.id, "alice") == 900


def test_a_refund_of_a_topup_is_not_found(engine, tenant, spend):
    topup = run(engine, tenant.id, "topup", user_id="alice", amount=50)

    view = refund(engine, tenant.id, "alice", 50, topup)

    assert code(view) == "original_not_found"
    assert balance(engine, tenant.id, "alice") == 950


def test_a_refund_of_an_unknown_transaction_is_not_found(engine, tenant, spend):
    assert code(refund(engine, tenant.id, "alice", 1, uuid.uuid4())) == "original_not_found"


def test_a_refund_cannot_refund_a_refund(engine, tenant, spend):
    first = refund(engine, tenant.id, "alice", 10, spend)

    assert code(refund(engine, tenant.id, "alice", 10, first)) == "original_not_found"


def test_concurrent_refunds_of_one_spend_never_exceed_it(engine, tenant, spend):
    ids = [
        submit(
            engine,
            tenant.id,
            "refund",
            user_id="alice",
            amount=30,
            original_transaction_id=uuid.UUID(spend["id"]),
        ).id
        for _ in range(10)
    ]
    start = threading.Barrier(len(ids), timeout=30)

    def apply(transaction_id: uuid.UUID) -> None:
        start.wait()
        post_transactions(engine, [transaction_id])

    with ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(apply, ids))

    views = [status(engine, tenant.id, i) for i in ids]
    assert Counter(code(v) or v["status"] for v in views) == {
        "applied": 3,
        "refund_exceeds_original": 7,
    }
    assert balance(engine, tenant.id, "alice") == 990
