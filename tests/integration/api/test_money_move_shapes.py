"""Splits, a hold's system account, payouts, exchanges and journals at the HTTP edge: every
bad shape is a 422 problem with its stable code, on every route that takes it, and nothing
is recorded. Whether well-formed ones are applied is the posting engine's business."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from werkzeug.test import TestResponse

from api.respond import amounts_as_strings
from ledger.money import MAX_AMOUNT
from tests.integration.api.conftest import Api

STRINGS = {"Tally-Amounts": "string"}


def body(type: str, **changes: Any) -> dict[str, Any]:
    """A body of `type` with a fresh reference id; `None` drops a field."""
    sent: dict[str, Any] = {"type": type, "reference_id": uuid.uuid4().hex}
    if type == "capture":
        sent["original_transaction_id"] = str(uuid.uuid4())
    elif type == "journal":
        sent.update(reason="year-end", postings=[posting()])
    else:
        sent.update(user_id="alice", asset_code="EUR", amount=100)
    if type == "exchange":
        sent.update(to_asset_code="USD", to_amount=110)
    sent.update(changes)
    return {name: value for name, value in sent.items() if value is not None}


def posting(**changes: Any) -> dict[str, Any]:
    return {"from": "@adjustments", "to": "alice", "asset_code": "EUR", "amount": 5, **changes}


def refused(api: Api, answer: TestResponse, sent: dict[str, Any]) -> dict[str, Any]:
    """The problem answered, after checking it is one and that nothing was recorded."""
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["type"] == f"https://tally.dev/problems/{problem['code']}"
    found = api.get(f"/transactions?reference_id={sent['reference_id']}")
    assert found.status_code == 404
    return problem


BAD_SPLITS = [
    ([], "splits: 1 to 50 legs"),
    ([{"to_user_id": "bob", "amount": 2}] * 51, "splits: 1 to 50 legs"),
    ("bob", "splits: 1 to 50 legs"),
    ([7], "splits[0]: each of the legs is a JSON object"),
    (
        [
            {"to_user_id": "bob", "amount": 50},
            {"to_user_id": "c", "to_account": "@x", "amount": 50},
        ],
        "splits[1]: to_user_id and to_account are exclusive",
    ),
    ([{"amount": 100}], "splits[0]: to_user_id or to_account is required"),
    ([{"to_user_id": "bob", "amount": 100, "memo": 1}], "splits[0]: unknown key 'memo'"),
    ([{"to_user_id": "bob", "amount": 0}], f"splits[0]: amount must be between 1 and {MAX_AMOUNT}"),
    (
        [{"to_user_id": "bob", "amount": 1.5}],
        "splits[0]: amount must be an integer of minor units",
    ),
    (
        [{"to_user_id": "bob", "amount": 50}, {"to_user_id": "bob", "amount": 50}],
        "splits[1]: destination named twice",
    ),
    (
        [{"to_user_id": "alice", "amount": 100}],
        "splits[0]: the source wallet cannot be a destination",
    ),
    (
        [{"to_user_id": "bob", "amount": 60}, {"to_account": "@fees", "amount": 30}],
        "splits: amounts sum to 90, amount is 100",
    ),
    (
        [{"to_account": "revenue", "amount": 100}],
        "splits[0]: to_account must match @[a-z0-9_]{1,32}",
    ),
]


@pytest.mark.parametrize(("splits", "message"), BAD_SPLITS)
@pytest.mark.parametrize("route", ["/transactions", "/wallets/spend"])
def test_a_bad_split_is_invalid_splits_naming_the_fault(api: Api, route, splits, message):
    sent = body("spend", splits=splits)
    if route != "/transactions":
        del sent["type"]

    problem = refused(api, api.post(route, sent), sent)

    assert (problem["code"], problem["detail"]) == ("invalid_splits", message)
    assert problem["errors"] == {"splits": [message]}


@pytest.mark.parametrize(
    ("type", "changes"),
    [
        ("transfer", {"to_user_id": "bob"}),
        ("hold", {"to_user_id": "bob"}),
        ("hold", {"to_account": "@payouts"}),
        ("refund", {"original_transaction_id": str(uuid.uuid4())}),
    ],
)
def test_each_splitting_type_is_held_to_the_same_shape(api: Api, type, changes):
    legs = [{"to_user_id": "bob", "amount": 60}, {"to_user_id": "carol", "amount": 30}]
    sent = body(type, splits=legs, **changes)

    problem = refused(api, api.post("/transactions", sent), sent)

    assert problem["code"] == "invalid_splits"


def test_a_capture_whose_legs_do_not_sum_to_its_amount_is_refused(api: Api):
    sent = body("capture", amount=50, splits=[{"to_user_id": "bob", "amount": 30}])

    problem = refused(api, api.post("/transactions", sent), sent)

    assert problem["detail"] == "splits: amounts sum to 30, amount is 50"


@pytest.mark.parametrize("type", ["topup", "bonus", "payout", "exchange"])
def test_types_that_do_not_split_refuse_splits(api: Api, type):
    sent = body(type, splits=[{"to_user_id": "bob", "amount": 100}])

    problem = refused(api, api.post("/transactions", sent), sent)

    assert (problem["code"], problem["errors"]) == (
        "unexpected_field",
        {"splits": [f"splits is not a field of a {type}"]},
    )


@pytest.mark.parametrize(
    ("type", "changes", "code", "field"),
    [
        ("hold", {"to_user_id": "bob", "to_account": "@payouts"}, "unexpected_field", "to_account"),
        ("spend", {"to_account": "@payouts"}, "unexpected_field", "to_account"),
        ("topup", {"payout_method": "sepa"}, "unexpected_field", "payout_method"),
        ("spend", {"destination": "DE89 ****"}, "unexpected_field", "destination"),
        ("exchange", {"to_asset_code": "EUR"}, "same_asset", "to_asset_code"),
        ("exchange", {"to_amount": None}, "missing_field", "to_amount"),
        ("exchange", {"to_asset_code": None}, "missing_field", "to_asset_code"),
        ("topup", {"to_asset_code": "USD", "to_amount": 5}, "unexpected_field", "to_asset_code"),
        ("payout", {"to_user_id": "bob"}, "unexpected_field", "to_user_id"),
        ("journal", {"postings": None}, "missing_field", "postings"),
        ("journal", {"reason": None}, "missing_field", "reason"),
        ("spend", {"postings": [posting()]}, "unexpected_field", "postings"),
    ],
)
def test_fields_of_the_wrong_type_or_missing_are_refused_with_their_code(
    api: Api, type, changes, code, field
):
    sent = body(type, **changes)

    problem = refused(api, api.post("/transactions", sent, key=api.tenant.admin_api_key), sent)

    assert (problem["code"], list(problem["errors"])) == (code, [field])


@pytest.mark.parametrize("name", ["user_id", "asset_code", "amount"])
def test_a_journal_names_no_wallet_asset_or_amount(api: Api, name):
    sent = body("journal", **{name: {"user_id": "alice", "asset_code": "EUR", "amount": 5}[name]})

    problem = refused(api, api.post("/transactions", sent, key=api.tenant.admin_api_key), sent)

    assert (problem["code"], list(problem["errors"])) == ("unexpected_field", [name])


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        ([], "postings: 1 to 100 postings"),
        ([posting()] * 101, "postings: 1 to 100 postings"),
        ([posting(), "x"], "postings[1]: each of the postings is a JSON object"),
        ([posting(to="@adjustments")], "postings[0]: from and to are the same account"),
        ([{**posting(), "memo": "x"}], "postings[0]: unknown key 'memo'"),
        ([{"from": "@bonus", "to": "bob", "amount": 5}], "postings[0]: asset_code is required"),
        ([posting(amount=0)], f"postings[0]: amount must be between 1 and {MAX_AMOUNT}"),
        ([posting(asset_code="eur")], "postings[0]: asset_code must match [A-Z0-9_]{1,32}"),
    ],
)
def test_a_bad_posting_is_invalid_postings_naming_the_fault(api: Api, postings, message):
    sent = body("journal", postings=postings)

    problem = refused(api, api.post("/transactions", sent, key=api.tenant.admin_api_key), sent)

    assert (problem["code"], problem["detail"]) == ("invalid_postings", message)
    assert problem["errors"] == {"postings": [message]}


def test_the_schema_refuses_malformed_new_fields_by_name(api: Api):
    sent = body("exchange", to_asset_code="usd", to_amount=0, destination="x" * 129)

    problem = refused(api, api.post("/transactions", sent), sent)

    assert problem["code"] == "validation_failed"
    assert set(problem["errors"]) == {"to_asset_code", "to_amount", "destination"}


def test_a_batch_answers_each_bad_item_with_its_own_code_and_records_none(api: Api):
    items = [
        body("spend", splits=[{"to_user_id": "bob", "amount": 99}]),
        body("exchange", to_asset_code="EUR"),
        body("journal", postings=[posting(to="@adjustments")]),
    ]

    answer = api.post("/transactions/batch", {"transactions": items}, key=api.tenant.admin_api_key)

    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert [(r["status"], r["error"]["code"]) for r in results] == [
        (422, "invalid_splits"),
        (422, "same_asset"),
        (422, "invalid_postings"),
    ]
    for item in items:
        assert api.get(f"/transactions?reference_id={item['reference_id']}").status_code == 404


def test_with_string_amounts_legs_postings_and_to_amount_are_read_as_integers(api: Api):
    """The faults below come after the amounts are judged: strings got through as ints."""
    split = body(
        "spend",
        amount="100",
        splits=[{"to_user_id": "bob", "amount": "60"}, {"to_user_id": "carol", "amount": "30"}],
    )
    exchange = body("exchange", amount="100", to_amount=str(MAX_AMOUNT), to_asset_code="EUR")
    journal = body("journal", postings=[posting(amount="5"), posting(to="@adjustments")])
    admin = api.tenant.admin_api_key

    split_problem = refused(api, api.post("/transactions", split, headers=STRINGS), split)
    exchange_problem = refused(api, api.post("/transactions", exchange, headers=STRINGS), exchange)
    journal_problem = refused(
        api, api.post("/transactions", journal, headers=STRINGS, key=admin), journal
    )

    assert split_problem["detail"] == "splits: amounts sum to 90, amount is 100"
    assert exchange_problem["code"] == "same_asset"
    assert journal_problem["detail"] == "postings[1]: from and to are the same account"


def test_the_string_form_renders_legs_postings_and_to_amount_as_strings():
    view = {
        "amount": 100,
        "to_amount": MAX_AMOUNT,
        "rate": "1.1",
        "splits": [{"to_user_id": "bob", "amount": 60, "balance_after": 60}],
        "postings": [{"from": "@bonus", "to": "bob", "asset_code": "EUR", "amount": 5}],
        "metadata": {"amount": 1},
    }

    assert amounts_as_strings(view) == {
        "amount": "100",
        "to_amount": str(MAX_AMOUNT),
        "rate": "1.1",
        "splits": [{"to_user_id": "bob", "amount": "60", "balance_after": "60"}],
        "postings": [{"from": "@bonus", "to": "bob", "asset_code": "EUR", "amount": "5"}],
        "metadata": {"amount": 1},
    }


def test_the_document_declares_the_new_codes_and_rules(api: Api):
    document = api.get("/openapi.json").get_json()
    post = document["paths"]["/api/v1/transactions"]["post"]["responses"]["422"]
    spend = document["paths"]["/api/v1/wallets/spend"]["post"]["responses"]["422"]
    codes = {"invalid_splits", "invalid_postings", "same_asset"}
    codes |= {"unknown_system_account", "unknown_asset"}
    assert codes <= set(post["x-problem-codes"])
    assert {"invalid_splits", "unknown_system_account"} <= set(spend["x-problem-codes"])
    schemas = document["components"]["schemas"]
    leg = schemas["Leg"]
    assert leg["additionalProperties"] is False
    assert leg["oneOf"] == [{"required": ["to_user_id"]}, {"required": ["to_account"]}]
    assert set(schemas["Posting"]["properties"]) == {"from", "to", "asset_code", "amount"}
    splits = schemas["Transaction"]["properties"]["splits"]
    assert (splits["minItems"], splits["maxItems"]) == (1, 50)
    assert "splits" in schemas["Spend"]["properties"]
