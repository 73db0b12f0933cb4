"""Amounts beyond 64 bits through the HTTP API: JSON integers by default, decimal strings
with `Tally-Amounts: string` (docs/api.md#amounts)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from ledger.money import MAX_AMOUNT
from ledger.posting import post_transactions
from tests.integration.api.conftest import NO_KEY, Api

BIG = 2**100 + 7  # past 2**64, and not a float's round number
STRINGS = {"Tally-Amounts": "string"}


def topup(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": BIG,
        "reference_id": uuid.uuid4().hex,
    }
    body.update(changes)
    return body


def exact(response: Any) -> Any:
    """The body as a parser that keeps every integer exact reads it."""
    return json.loads(response.get_data())


def apply(api: Api, transaction_id: str) -> None:
    post_transactions(api.engine, [uuid.UUID(transaction_id)])


def test_amounts_beyond_2_64_round_trip_as_json_integers(api: Api):
    accepted = api.post("/wallets/topup", topup())
    assert accepted.status_code == 202
    assert exact(accepted)["amount"] == BIG
    transaction_id = exact(accepted)["id"]
    apply(api, transaction_id)
    spent = api.post("/wallets/spend", topup(amount=BIG - 1))
    apply(api, exact(spent)["id"])

    status = api.get(f"/transactions/{transaction_id}")
    balance = api.get("/wallets/alice/balance?asset_code=EUR")
    history = api.get("/wallets/alice/transactions?asset_code=EUR")

    assert str(BIG).encode() in status.get_data()
    assert exact(status)["amount"] == BIG
    assert exact(status)["balance_after"] == BIG
    assert exact(api.get(f"/transactions/{exact(spent)['id']}"))["balance_after"] == 1
    assert (exact(balance)["balance"], exact(balance)["available"]) == (1, 1)
    assert [item["amount"] for item in exact(history)["items"]] == [-(BIG - 1), BIG]


def test_the_largest_amount_is_accepted_and_one_more_is_refused(api: Api):
    largest = api.post("/wallets/topup", topup(amount=MAX_AMOUNT))
    beyond = api.post("/wallets/topup", topup(amount=MAX_AMOUNT + 1))

    assert largest.status_code == 202
    assert exact(largest)["amount"] == MAX_AMOUNT
    assert beyond.status_code == 422
    assert exact(beyond)["errors"]["amount"] == [
        f"Must be a non-zero integer between 1 and {MAX_AMOUNT}."
    ]


def test_bulk_intake_carries_amounts_beyond_2_64(api: Api):
    items = [{**topup(amount=BIG + n), "type": "topup"} for n in range(3)]

    answer = api.post("/transactions/batch", {"transactions": items})

    assert answer.status_code == 200
    assert [r["transaction"]["amount"] for r in exact(answer)["results"]] == [
        BIG,
        BIG + 1,
        BIG + 2,
    ]


def test_the_string_form_sends_and_answers_every_money_field_as_a_decimal_string(api: Api):
    body = topup(amount=str(BIG), metadata={"amount": 5, "note": {"amount": "7"}})

    accepted = api.post("/wallets/topup", body, headers=STRINGS)
    apply(api, exact(accepted)["id"])
    status = api.get(f"/transactions/{exact(accepted)['id']}", headers=STRINGS)
    balance = api.get("/wallets/alice/balance?asset_code=EUR", headers=STRINGS)
    plain = api.get(f"/transactions/{exact(accepted)['id']}")

    assert accepted.status_code == 202
    assert exact(accepted)["amount"] == str(BIG)
    assert exact(status)["amount"] == str(BIG)
    assert exact(status)["balance_after"] == str(BIG)
    # Metadata is the client's own: an "amount" inside it is never rewritten.
    assert exact(status)["metadata"] == {"amount": 5, "note": {"amount": "7"}}
    assert {name: exact(balance)[name] for name in ("balance", "available", "pending")} == {
        "balance": str(BIG),
        "available": str(BIG),
        "pending": "0",
    }
    assert exact(balance)["version"] == 1  # not money: stays a number
    assert exact(plain)["amount"] == BIG


def test_the_string_form_covers_transfers_holds_and_credit_limits(api: Api):
    apply(api, exact(api.post("/wallets/topup", topup()))["id"])
    transfer = {**topup(amount=str(BIG - 1)), "type": "transfer", "to_user_id": "bob"}
    hold = {**topup(amount="1"), "type": "hold"}
    moved = api.post("/transactions", transfer, headers=STRINGS)
    held = api.post("/transactions", hold, headers=STRINGS)
    apply(api, exact(moved)["id"])
    apply(api, exact(held)["id"])
    limit = api.request(
        "PATCH",
        "/wallets/alice",
        json={"asset_code": "EUR", "credit_limit": str(BIG)},
        key=api.tenant.admin_api_key,
        headers=STRINGS,
    )

    moved_view = exact(api.get(f"/transactions/{exact(moved)['id']}", headers=STRINGS))
    held_view = exact(api.get(f"/transactions/{exact(held)['id']}", headers=STRINGS))
    assert (moved_view["balance_after"], moved_view["to_balance_after"]) == ("1", str(BIG - 1))
    assert held_view["hold"]["amount"] == "1"
    assert limit.status_code == 200
    assert (exact(limit)["credit_limit"], exact(limit)["available"]) == (str(BIG), str(BIG))


def test_the_string_form_works_for_bulk_intake_too(api: Api):
    items = [{**topup(amount=str(BIG)), "type": "topup"}, {**topup(amount=12), "type": "topup"}]

    answer = api.post("/transactions/batch", {"transactions": items}, headers=STRINGS)

    assert [r["transaction"]["amount"] for r in exact(answer)["results"]] == [str(BIG), "12"]


@pytest.mark.parametrize(
    "amount", ["1.5", "12abc", "", " 12", "1e3", "0x10", "+5", "007", str(2**140), "-5"]
)
def test_a_bad_string_amount_is_a_422_problem_naming_the_field(api: Api, amount: str):
    answer = api.post("/wallets/topup", topup(amount=amount), headers=STRINGS)

    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    problem = exact(answer)
    assert problem["code"] == "validation_failed"
    assert list(problem["errors"]) == ["amount"]


def test_without_the_header_a_string_amount_is_refused_and_says_how_to_send_one(api: Api):
    answer = api.post("/wallets/topup", topup(amount="100"))

    assert answer.status_code == 422
    assert "Tally-Amounts: string" in exact(answer)["errors"]["amount"][0]


def test_the_openapi_document_shows_the_bounds_of_an_amount(api: Api):
    document = exact(api.get("/openapi.json", key=NO_KEY))
    schemas = document["components"]["schemas"]

    topup_amount = schemas["Topup"]["properties"]["amount"]
    any_amount = schemas["Transaction"]["properties"]["amount"]

    assert (topup_amount["minimum"], topup_amount["maximum"]) == (1, MAX_AMOUNT)
    assert (any_amount["minimum"], any_amount["maximum"]) == (-MAX_AMOUNT, MAX_AMOUNT)
