"""POST /transactions/batch: one commit for many submissions, each answered on its own."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from ledger.posting import post_transactions
from tests.integration.api.conftest import Api

BATCH = "/transactions/batch"


def item(type: str = "topup", **changes: Any) -> dict[str, Any]:
    body = {
        "type": type,
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
    }
    body.update(changes)
    return body


def rows_of(api: Api) -> list[tuple[str, str]]:
    """(reference_id, status) of the tenant's transactions, in acceptance order."""
    with api.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT reference_id, status FROM transactions WHERE tenant_id = :t ORDER BY seq"),
            {"t": api.tenant.id},
        )
        return [(reference, status) for reference, status in rows]


def test_valid_items_are_accepted_and_each_invalid_one_is_answered_on_its_own(api):
    items = [
        item(reference_id="ok-topup"),
        item(amount=-5),
        {"type": "spend", "user_id": "alice", "asset_code": "EUR"},
        "not an object",
        item(asset_code="NOPE"),
        item("adjustment", amount=5, reason="goodwill"),
        item("transfer", to_user_id="alice"),
        item("transfer", reference_id="ok-transfer", to_user_id="bob", amount=30),
    ]

    response = api.post(BATCH, {"transactions": items})

    assert response.status_code == 200, response.json
    body = response.json
    outcomes = [(r["index"], r["status"], r["outcome"]) for r in body["results"]]
    assert outcomes == [
        (0, 202, "accepted"),
        (1, 422, "error"),
        (2, 422, "error"),
        (3, 422, "error"),
        (4, 404, "error"),
        (5, 403, "error"),
        (6, 422, "error"),
        (7, 202, "accepted"),
    ]
    codes = [r.get("error", {}).get("code") for r in body["results"]]
    assert codes == [
        None,
        "validation_failed",
        "validation_failed",
        "validation_failed",
        "asset_not_found",
        "admin_key_required",
        "same_wallet",
        None,
    ]
    assert "amount" in body["results"][1]["error"]["errors"]
    assert set(body["results"][2]["error"]["errors"]) == {"amount", "reference_id"}
    assert (body["accepted"], body["replayed"], body["errors"]) == (2, 0, 6)
    assert body["results"][0]["transaction"]["status"] == "queued"
    assert rows_of(api) == [("ok-topup", "queued"), ("ok-transfer", "queued")]


def test_items_are_applied_in_the_order_of_the_batch(api):
    items = [
        item(reference_id="first", amount=100),
        item("spend", reference_id="second", amount=100),
        item("spend", reference_id="third", amount=1),
    ]

    body = api.post(BATCH, {"transactions": items}).json
    ids = [uuid.UUID(r["transaction"]["id"]) for r in body["results"]]
    outcomes = post_transactions(api.engine, ids, fill_to=len(ids)).outcomes

    assert [o.transaction_id for o in outcomes] == ids
    assert [(o.status, o.code) for o in outcomes] == [
        ("applied", None),
        ("applied", None),
        ("rejected", "insufficient_funds"),
    ]


def test_a_repeated_batch_replays_every_item_without_new_rows(api):
    items = [item(reference_id=f"order-{n}", amount=10 + n) for n in range(3)]
    first = api.post(BATCH, {"transactions": items}).json

    again = api.post(BATCH, {"transactions": items}).json

    assert [r["outcome"] for r in again["results"]] == ["replayed"] * 3
    assert [r["status"] for r in again["results"]] == [200] * 3
    assert [r["transaction"]["id"] for r in again["results"]] == [
        r["transaction"]["id"] for r in first["results"]
    ]
    assert (again["accepted"], again["replayed"], again["errors"]) == (0, 3, 0)
    assert len(rows_of(api)) == 3


def test_replays_show_the_outcome_and_a_changed_body_is_a_conflict(api):
    applied = api.post(BATCH, {"transactions": [item(reference_id="paid", amount=70)]}).json
    post_transactions(api.engine, [uuid.UUID(applied["results"][0]["transaction"]["id"])])

    body = api.post(
        BATCH,
        {
            "transactions": [
                item(reference_id="paid", amount=70),
                item(reference_id="paid", amount=71),
                item(reference_id="fresh", amount=5),
            ]
        },
    ).json

    replay, conflict, fresh = body["results"]
    assert replay["outcome"] == "replayed"
    assert replay["transaction"]["status"] == "applied"
    assert replay["transaction"]["balance_after"] == 70
    assert (conflict["status"], conflict["error"]["code"]) == (409, "idempotency_key_reused")
    assert fresh["outcome"] == "accepted"
    assert [reference for reference, _ in rows_of(api)] == ["paid", "fresh"]


def test_a_reference_repeated_inside_one_batch_is_recorded_once(api):
    same = item(reference_id="twice", amount=8)

    body = api.post(BATCH, {"transactions": [same, same, {**same, "amount": 9}]}).json

    first, copy, changed = body["results"]
    assert (first["outcome"], copy["outcome"]) == ("accepted", "replayed")
    assert copy["transaction"]["id"] == first["transaction"]["id"]
    assert (changed["status"], changed["error"]["code"]) == (409, "idempotency_key_reused")
    assert rows_of(api) == [("twice", "queued")]


def test_a_batch_item_and_a_single_submission_share_idempotency(api):
    body = item(reference_id="shared", amount=12)
    from_batch = api.post(BATCH, {"transactions": [body]}).json["results"][0]

    single = api.post("/transactions", body)

    assert single.status_code == 200
    assert single.headers["Idempotent-Replayed"] == "true"
    assert single.json["id"] == from_batch["transaction"]["id"]


def test_admin_keys_may_send_adjustments_in_a_batch(api):
    body = api.post(
        BATCH,
        {"transactions": [item("adjustment", amount=-3, reason="fix")]},
        key=api.tenant.admin_api_key,
    ).json

    assert body["results"][0]["outcome"] == "accepted"


def test_one_thousand_items_are_accepted_in_one_request(api):
    items = [item(user_id=f"user-{n % 50}", reference_id=f"bulk-{n}") for n in range(1000)]

    body = api.post(BATCH, {"transactions": items}).json

    assert body["accepted"] == 1000
    assert [r["index"] for r in body["results"]] == list(range(1000))
    assert [reference for reference, _ in rows_of(api)] == [f"bulk-{n}" for n in range(1000)]


def test_the_thousand_and_first_item_rejects_the_batch_as_too_large(api):
    items = [item(reference_id=f"big-{n}") for n in range(1001)]

    response = api.post(BATCH, {"transactions": items})

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "batch_too_large"
    assert rows_of(api) == []


def test_an_empty_or_malformed_batch_is_a_validation_error(api):
    for body in ({"transactions": []}, {"transactions": "x"}, {}, [item()]):
        response = api.post(BATCH, body)

        assert response.status_code == 422, body
        assert response.json["code"] == "validation_failed"
    assert rows_of(api) == []
