"""The whole pipeline over HTTP, once per broker: intake → broker → worker → PostgreSQL → status."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sqlalchemy import Engine, text

from tests.conftest import TenantFixture
from tests.support.stack import ApiClient, Stack, outcome_of, submit_concurrently

TERMINAL = {"applied", "rejected", "failed"}


def ref() -> str:
    return uuid.uuid4().hex


def body(user_id: str, amount: int, **fields: Any) -> dict[str, Any]:
    """A submission body in EUR with a fresh reference id."""
    base = {"user_id": user_id, "asset_code": "EUR", "amount": amount, "reference_id": ref()}
    return {**base, **fields}


def balance_of(client: ApiClient, user_id: str) -> dict[str, Any]:
    response = client.get(f"/wallets/{user_id}/balance", params={"asset_code": "EUR"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def settle(client: ApiClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Submit, expect 202 with a Location, and long-poll the transaction to its outcome."""
    response = client.post(path, payload)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] in {"queued", *TERMINAL}
    assert response.headers["Location"].endswith(f"/transactions/{accepted['id']}")
    return outcome_of(client, accepted["id"])


def assert_applied(client: ApiClient, outcome: dict[str, Any], **balances: int) -> None:
    """Applied, with each named wallet's balance_after equal to its balance right now."""
    assert outcome["status"] == "applied", outcome
    assert outcome["result"] is None
    for user_id, expected in balances.items():
        after = (
            outcome["balance_after"]
            if user_id == outcome["user_id"]
            else outcome["to_balance_after"]
        )
        assert after == expected == balance_of(client, user_id)["balance"], (user_id, outcome)


def assert_rejected(client: ApiClient, outcome: dict[str, Any], code: str, balance: int) -> None:
    assert outcome["status"] == "rejected", outcome
    assert outcome["result"]["code"] == code
    assert outcome["balance_after"] is None
    assert balance_of(client, outcome["user_id"])["balance"] == balance


def test_every_transaction_type_reaches_its_outcome(stack: Stack, tenant: TenantFixture) -> None:
    client, admin = stack.client(tenant.api_key), stack.client(tenant.admin_api_key)

    topup = settle(client, "/wallets/topup", body("alice", 1000, payment_method="card"))
    assert_applied(client, topup, alice=1000)
    assert topup["payment_method"] == "card"
    bonus = settle(client, "/wallets/bonus", body("alice", 200, bonus_type="REFERRAL"))
    assert_applied(client, bonus, alice=1200)
    spend = settle(client, "/wallets/spend", body("alice", 300, item_id="sku-1"))
    assert_applied(client, spend, alice=900)
    refund = settle(
        client,
        "/transactions",
        body("alice", 100, type="refund", original_transaction_id=spend["id"]),
    )
    assert_applied(client, refund, alice=1000)
    transfer = settle(
        client, "/transactions", body("alice", 400, type="transfer", to_user_id="bob")
    )
    assert_applied(client, transfer, alice=600, bob=400)
    debit = settle(admin, "/transactions", body("alice", -50, type="adjustment", reason="fee"))
    assert_applied(client, debit, alice=550)
    credit = settle(admin, "/transactions", body("bob", 25, type="adjustment", reason="goodwill"))
    assert_applied(client, credit, bob=425)
    general = settle(client, "/transactions", body("bob", 75, type="topup"))
    assert_applied(client, general, bob=500)

    overspend = settle(client, "/wallets/spend", body("alice", 10_000))
    assert_rejected(client, overspend, "insufficient_funds", balance=550)
    over_refund = settle(
        client,
        "/transactions",
        body("alice", 201, type="refund", original_transaction_id=spend["id"]),
    )
    assert_rejected(client, over_refund, "refund_exceeds_original", balance=550)
    refund_of_topup = settle(
        client,
        "/transactions",
        body("alice", 1, type="refund", original_transaction_id=topup["id"]),
    )
    assert_rejected(client, refund_of_topup, "original_not_found", balance=550)
    overdraft = settle(client, "/transactions", body("bob", 501, type="transfer", to_user_id="c"))
    assert_rejected(client, overdraft, "insufficient_funds", balance=500)

    every = [topup, bonus, spend, refund, transfer, debit, credit, general]
    for outcome in [*every, overspend, over_refund, refund_of_topup, overdraft]:
        found = client.get("/transactions", params={"reference_id": outcome["reference_id"]})
        assert found.status_code == 200, found.text
        assert found.json() == outcome
    # The other tenant key of the same tenant sees the same transactions.
    assert admin.get(f"/transactions/{spend['id']}").json() == spend


def test_wallet_history_pages_newest_first_with_a_cursor(stack: Stack, tenant: TenantFixture):
    client = stack.client(tenant.api_key)
    applied = [
        settle(client, "/wallets/topup", body("carol", amount)) for amount in (10, 20, 30, 40, 50)
    ]
    settle(client, "/wallets/spend", body("carol", 1000))  # rejected: no entry in the history

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"asset_code": "EUR", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/wallets/carol/transactions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [len(items) for items in pages] == [2, 2, 1]
    items = [item for items in pages for item in items]
    assert [item["transaction_id"] for item in items] == [t["id"] for t in reversed(applied)]
    assert [item["balance_after"] for item in items] == [150, 100, 60, 30, 10]
    assert [item["balance_after"] for item in items] == [
        t["balance_after"] for t in reversed(applied)
    ]
    versions = [item["version"] for item in items]
    assert versions == sorted(versions, reverse=True)


def test_frozen_wallet_refuses_debits_until_unfrozen(stack: Stack, tenant: TenantFixture) -> None:
    client = stack.client(tenant.api_key)
    settle(client, "/wallets/topup", body("dave", 100))

    frozen = client.post("/wallets/dave/freeze", {"asset_code": "EUR"})
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["status"] == "frozen"
    assert balance_of(client, "dave")["status"] == "frozen"
    spend = settle(client, "/wallets/spend", body("dave", 10))
    assert_rejected(client, spend, "wallet_frozen", balance=100)
    transfer = settle(client, "/transactions", body("dave", 10, type="transfer", to_user_id="eve"))
    assert_rejected(client, transfer, "wallet_frozen", balance=100)
    assert_applied(client, settle(client, "/wallets/topup", body("dave", 5)), dave=105)

    # Lifting a freeze is an admin's.
    admin = stack.client(tenant.admin_api_key)
    unfrozen = admin.post("/wallets/dave/unfreeze", {"asset_code": "EUR"})
    assert unfrozen.status_code == 200, unfrozen.text
    assert unfrozen.json()["status"] == "active"
    assert_applied(client, settle(client, "/wallets/spend", body("dave", 10)), dave=95)


def test_concurrent_spends_never_overdraw_the_wallet(stack: Stack, tenant: TenantFixture) -> None:
    client = stack.client(tenant.api_key)
    assert_applied(client, settle(client, "/wallets/topup", body("frank", 50)), frank=50)
    spends = 200
    start = threading.Barrier(spends)

    def spend(_: int) -> requests.Response:
        own = ApiClient(stack.base_url, tenant.api_key)
        start.wait(timeout=60)  # every request leaves at once
        return own.post("/wallets/spend", body("frank", 1))

    with ThreadPoolExecutor(max_workers=spends) as pool:
        responses = list(pool.map(spend, range(spends)))

    assert [r.status_code for r in responses] == [202] * spends, {r.text for r in responses}
    ids = [r.json()["id"] for r in responses]
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(
            pool.map(lambda i: outcome_of(ApiClient(stack.base_url, tenant.api_key), i), ids)
        )
    results = Counter((o["status"], (o["result"] or {}).get("code")) for o in outcomes)
    assert results == {("applied", None): 50, ("rejected", "insufficient_funds"): 150}
    final = balance_of(client, "frank")
    assert final["balance"] == 0 and final["available"] == 0
    applied_after = sorted(o["balance_after"] for o in outcomes if o["status"] == "applied")
    assert applied_after == list(range(50)), "each applied spend saw a distinct balance"


def test_long_poll_returns_as_soon_as_the_transaction_is_applied(stack, tenant) -> None:
    client = stack.client(tenant.api_key)
    accepted = client.post("/wallets/topup", body("gina", 10))
    assert accepted.status_code == 202

    started = time.monotonic()
    response = client.get(f"/transactions/{accepted.json()['id']}", params={"wait": 30})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["status"] == "applied"
    assert elapsed < 30, "the wait ended on the outcome, not on its bound"


def test_submission_with_wait_answers_with_the_outcome(stack, tenant) -> None:
    client = stack.client(tenant.api_key)

    response = client.post("/wallets/topup?wait=10", body("hana", 10))

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "applied"
    assert response.json()["balance_after"] == 10
    rejected = client.post("/wallets/spend?wait=10", body("hana", 11))
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["result"]["code"] == "insufficient_funds"


def test_amounts_beyond_64_bits_go_through_the_pipeline_and_long_polls_exactly(
    stack, tenant
) -> None:
    client = stack.client(tenant.api_key)
    big = 2**100 + 7

    applied = client.post("/wallets/topup?wait=10", body("ines", big))
    as_strings = client.post(
        "/wallets/spend?wait=10",
        body("ines", str(big - 1)),
        headers={"Tally-Amounts": "string"},
    )
    polled = client.get(
        f"/transactions/{as_strings.json()['id']}",
        params={"wait": 10},
        headers={"Tally-Amounts": "string"},
    )

    assert applied.status_code == 202, applied.text
    assert (applied.json()["status"], applied.json()["balance_after"]) == ("applied", big)
    assert as_strings.status_code == 202, as_strings.text
    assert as_strings.json()["status"] == "applied"
    assert (as_strings.json()["amount"], as_strings.json()["balance_after"]) == (str(big - 1), "1")
    assert polled.json()["amount"] == str(big - 1)
    assert balance_of(client, "ines")["balance"] == 1


def test_resubmission_replays_the_original_transaction(stack, tenant) -> None:
    client = stack.client(tenant.api_key)
    payload = body("ivan", 70, payment_method="card", metadata={"order": 17})

    first = client.post("/wallets/topup", payload)
    again = client.post("/wallets/topup", payload)
    outcome = outcome_of(client, first.json()["id"])
    after_applied = client.post("/wallets/topup", payload)
    conflict = client.post("/wallets/topup", {**payload, "amount": 71})

    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    for replay in (again, after_applied):
        assert replay.status_code == 200, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == first.json()["id"]
    assert after_applied.json() == outcome
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"] == "application/problem+json"
    assert conflict.json()["code"] == "idempotency_key_reused"
    assert balance_of(client, "ivan")["balance"] == 70


def test_concurrent_duplicates_create_one_transaction(
    stack: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    payload = body("judy", 5)
    copies = 50
    start = threading.Barrier(copies)

    def submit(_: int) -> requests.Response:
        own = ApiClient(stack.base_url, tenant.api_key)
        start.wait(timeout=60)
        return own.post("/wallets/topup", payload)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        responses = list(pool.map(submit, range(copies)))

    assert Counter(r.status_code for r in responses) == {202: 1, 200: copies - 1}
    assert len({r.json()["id"] for r in responses}) == 1
    replays = [r for r in responses if r.status_code == 200]
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in replays)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND reference_id = :r"),
            {"t": tenant.id, "r": payload["reference_id"]},
        ).scalar_one()
    assert rows == 1
    client = stack.client(tenant.api_key)
    outcome_of(client, responses[0].json()["id"])
    assert balance_of(client, "judy")["balance"] == 5


def test_bulk_submissions_all_reach_an_outcome(stack: Stack, tenant: TenantFixture) -> None:
    calls = [("/wallets/topup", body(f"user-{i % 20}", 3)) for i in range(200)]

    responses = submit_concurrently(stack.base_url, tenant.api_key, calls, threads=16)

    assert {r.status_code for r in responses} == {202}
    client = stack.client(tenant.api_key)
    outcomes = [outcome_of(client, r.json()["id"]) for r in responses]
    assert {o["status"] for o in outcomes} == {"applied"}
    assert {balance_of(client, f"user-{i}")["balance"] for i in range(20)} == {30}
