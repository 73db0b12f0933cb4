"""Splits, payouts, exchanges and journal entries through the HTTP API, applied by the real
posting engine on real PostgreSQL (docs/design.md#splits, docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.posting import post_transactions
from ledger.system_accounts import define_system_account
from ledger.wallets import freeze_wallet
from tests.integration.api.conftest import Api

ORDER_LEGS = [
    {"to_user_id": "seller", "amount": 9000},
    {"to_account": "@fees", "amount": 800},
    {"to_account": "@tax", "amount": 200},
]


@pytest.fixture
def shop(api: Api) -> Api:
    """A tenant with @fees and @tax defined and a buyer holding 1,000.00 EUR."""
    with unit_of_work(api.engine) as work:
        for name in ("@fees", "@tax"):
            define_system_account(work, api.tenant.id, name, actor=OPERATOR)
    applied(api, "/wallets/topup", {"user_id": "buyer", "amount": 100_000})
    return api


def submit(api: Api, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    walletless = body.get("type") in ("capture", "void", "journal")
    body = {
        **({} if walletless else {"asset_code": "EUR"}),
        "reference_id": uuid.uuid4().hex,
        **body,
    }
    response = api.post(path, body, **kwargs)
    assert response.status_code == 202, response.get_json()
    return dict(response.get_json())


def applied(api: Api, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Submit, apply, and answer the transaction as the status endpoint shows it."""
    accepted = submit(api, path, body, **kwargs)
    post_transactions(api.engine, [uuid.UUID(accepted["id"])])
    return dict(api.get(f"/transactions/{accepted['id']}").get_json())


def balance(api: Api, user: str, asset: str = "EUR") -> int:
    return int(api.get(f"/wallets/{user}/balance?asset_code={asset}").get_json()["balance"])


def system_balances(api: Api, asset: str = "EUR") -> dict[str, int]:
    listed = api.get(f"/system-accounts?asset_code={asset}").get_json()
    return {account["name"]: account["balance"] for account in listed}


def order(api: Api, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spend = applied(
        api,
        "/transactions",
        {"type": "spend", "user_id": "buyer", "amount": 10_000, "splits": legs or ORDER_LEGS},
    )
    assert spend["status"] == "applied", spend
    return spend


def refund(api: Api, spend: dict[str, Any], amount: int, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "refund",
        "user_id": "buyer",
        "amount": amount,
        "original_transaction_id": spend["id"],
        **fields,
    }
    return applied(api, "/transactions", body)


def test_a_split_spend_pays_every_leg_at_once_and_each_wallet_leg_sees_it(shop: Api):
    spend = order(shop)

    assert spend["splits"] == [
        {"to_user_id": "seller", "amount": 9000, "balance_after": 9000},
        {"to_account": "@fees", "amount": 800},
        {"to_account": "@tax", "amount": 200},
    ]
    assert spend["balance_after"] == 90_000
    assert (balance(shop, "buyer"), balance(shop, "seller")) == (90_000, 9000)
    accounts = system_balances(shop)
    assert (accounts["@fees"], accounts["@tax"], accounts["@revenue"]) == (800, 200, 0)
    seller_history = shop.get("/wallets/seller/transactions?asset_code=EUR").get_json()
    assert [(item["transaction_id"], item["amount"]) for item in seller_history["items"]] == [
        (spend["id"], 9000)
    ]


def test_a_split_transfer_and_a_spend_leg_on_revenue(shop: Api):
    transfer = applied(
        shop,
        "/transactions",
        {
            "type": "transfer",
            "user_id": "buyer",
            "amount": 300,
            "splits": [{"to_user_id": "ann", "amount": 100}, {"to_user_id": "bob", "amount": 200}],
        },
    )
    spend = applied(
        shop,
        "/wallets/spend",
        {
            "user_id": "buyer",
            "amount": 50,
            "splits": [
                {"to_account": "@revenue", "amount": 45},
                {"to_account": "@tax", "amount": 5},
            ],
        },
    )

    assert (transfer["status"], spend["status"]) == ("applied", "applied")
    assert (balance(shop, "ann"), balance(shop, "bob")) == (100, 200)
    assert system_balances(shop)["@revenue"] == 45


def test_a_partial_refund_of_a_split_takes_back_from_each_leg_pro_rata(shop: Api):
    spend = order(shop)

    first = refund(shop, spend, 5000)
    # 1 unit over three legs of 9000/800/200 left after the first refund: 4500/400/100 left,
    # shares 0.9/0.08/0.02; the largest remainder is the seller's.
    second = refund(shop, spend, 1)

    assert first["status"] == "applied"
    assert first["splits"] == [
        {"to_user_id": "seller", "amount": 4500, "balance_after": 4500},
        {"to_account": "@fees", "amount": 400},
        {"to_account": "@tax", "amount": 100},
    ]
    assert second["splits"] == [{"to_user_id": "seller", "amount": 1, "balance_after": 4499}]
    assert balance(shop, "buyer") == 90_000 + 5001
    accounts = system_balances(shop)
    assert (accounts["@fees"], accounts["@tax"]) == (400, 100)


def test_a_refund_may_say_which_legs_give_back_but_never_more_than_a_leg_received(shop: Api):
    spend = order(shop)

    fees_only = refund(shop, spend, 800, splits=[{"to_account": "@fees", "amount": 800}])
    too_much = refund(shop, spend, 1, splits=[{"to_account": "@fees", "amount": 1}])
    stranger = refund(shop, spend, 1, splits=[{"to_account": "@revenue", "amount": 1}])
    # What is left is the seller's and @tax's: a pro-rata refund of it all still fits.
    rest = refund(shop, spend, 9200)

    assert fees_only["status"] == "applied"
    assert fees_only["splits"] == [{"to_account": "@fees", "amount": 800}]
    assert too_much["result"]["code"] == "refund_exceeds_original"
    assert "(leg @fees)" in too_much["result"]["message"]
    assert stranger["result"]["code"] == "invalid_splits"
    assert "@revenue" in stranger["result"]["message"]
    assert rest["splits"] == [
        {"to_user_id": "seller", "amount": 9000, "balance_after": 0},
        {"to_account": "@tax", "amount": 200},
    ]
    assert refund(shop, spend, 1)["result"]["code"] == "refund_exceeds_original"
    assert balance(shop, "buyer") == 100_000


def test_a_leg_that_cannot_give_back_rejects_the_whole_refund_and_is_named(shop: Api):
    spend = order(shop)
    applied(shop, "/wallets/spend", {"user_id": "seller", "amount": 8000})

    short = refund(shop, spend, 10_000)
    with unit_of_work(shop.engine) as work:
        freeze_wallet(work, shop.tenant.id, "seller", "EUR", reason="review", actor=OPERATOR)
    frozen = refund(shop, spend, 10)

    assert short["status"] == "rejected"
    assert short["result"]["code"] == "insufficient_funds"
    assert short["result"]["message"].endswith("(leg seller)")
    assert frozen["result"]["code"] == "wallet_frozen"
    assert frozen["result"]["message"].endswith("(leg seller)")
    assert (balance(shop, "buyer"), balance(shop, "seller")) == (90_000, 1000)
    assert system_balances(shop)["@fees"] == 800


def test_a_payout_and_a_two_phase_payout_leave_through_payouts(shop: Api):
    payout = applied(
        shop,
        "/transactions",
        {
            "type": "payout",
            "user_id": "buyer",
            "amount": 1000,
            "payout_method": "sepa",
            "destination": "DE89 **** 3000",
        },
    )
    hold = applied(
        shop,
        "/transactions",
        {"type": "hold", "user_id": "buyer", "amount": 2000, "to_account": "@payouts"},
    )
    capture = applied(
        shop,
        "/transactions",
        {"type": "capture", "original_transaction_id": hold["id"], "amount": 1500},
    )
    broke = applied(shop, "/transactions", {"type": "payout", "user_id": "buyer", "amount": 10**9})

    assert (payout["payout_method"], payout["destination"]) == ("sepa", "DE89 **** 3000")
    assert hold["to_account"] == "@payouts"
    assert (capture["status"], capture["to_account"]) == ("applied", "@payouts")
    assert broke["result"]["code"] == "insufficient_funds"
    assert system_balances(shop)["@payouts"] == 2500
    assert balance(shop, "buyer") == 100_000 - 2500


def test_a_split_hold_captured_in_part_pays_its_legs_pro_rata(shop: Api):
    hold = applied(
        shop,
        "/transactions",
        {"type": "hold", "user_id": "buyer", "amount": 10_000, "splits": ORDER_LEGS},
    )
    capture = applied(
        shop,
        "/transactions",
        {"type": "capture", "original_transaction_id": hold["id"], "amount": 5001},
    )

    # 5001 x 0.9 / 0.08 / 0.02 = 4500.9 / 400.08 / 100.02: the seller's remainder is largest.
    assert capture["splits"] == [
        {"to_user_id": "seller", "amount": 4501, "balance_after": 4501},
        {"to_account": "@fees", "amount": 400},
        {"to_account": "@tax", "amount": 100},
    ]
    refunded = refund(shop, capture, 5001)
    assert refunded["splits"] == [
        {"to_user_id": "seller", "amount": 4501, "balance_after": 0},
        {"to_account": "@fees", "amount": 400},
        {"to_account": "@tax", "amount": 100},
    ]
    assert balance(shop, "buyer") == 100_000


def test_an_exchange_moves_two_assets_through_exchange_at_the_clients_rate(shop: Api):
    created = shop.post(
        "/assets",
        {"code": "PTS", "name": "Points", "decimal_places": 0},
        key=shop.tenant.admin_api_key,
    )
    assert created.status_code == 201

    exchange = applied(
        shop,
        "/transactions",
        {
            "type": "exchange",
            "user_id": "buyer",
            "amount": 1000,
            "to_asset_code": "PTS",
            "to_amount": 1250,
            "to_user_id": "friend",
        },
    )

    assert exchange["status"] == "applied"
    assert (exchange["rate"], exchange["to_amount"], exchange["to_asset_code"]) == (
        "1.25",
        1250,
        "PTS",
    )
    assert (exchange["balance_after"], exchange["to_balance_after"]) == (99_000, 1250)
    assert balance(shop, "friend", "PTS") == 1250
    assert system_balances(shop)["@exchange"] == 1000
    assert system_balances(shop, "PTS")["@exchange"] == -1250


def test_a_journal_entry_moves_every_posting_or_none_and_needs_an_admin_key(shop: Api):
    postings = [
        {"from": "@fees", "to": "@adjustments", "asset_code": "EUR", "amount": 300},
        {"from": "buyer", "to": "newcomer", "asset_code": "EUR", "amount": 700},
        {"from": "newcomer", "to": "@tax", "asset_code": "EUR", "amount": 200},
    ]
    body = {"type": "journal", "reason": "settlement", "postings": postings}
    refused = shop.post("/transactions", {**body, "reference_id": uuid.uuid4().hex})
    journal = applied(shop, "/transactions", body, key=shop.tenant.admin_api_key)
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "admin_key_required"
    assert journal["status"] == "applied"
    assert journal["postings"] == postings
    assert (balance(shop, "buyer"), balance(shop, "newcomer")) == (99_300, 500)
    accounts = system_balances(shop)
    assert (accounts["@fees"], accounts["@adjustments"], accounts["@tax"]) == (-300, 300, 200)
    # A wallet is judged on where all its postings leave it: newcomer gives 600, more than
    # its 500, and gets 200 back.
    netted = applied(
        shop,
        "/transactions",
        {
            **body,
            "postings": [
                {"from": "newcomer", "to": "buyer", "asset_code": "EUR", "amount": 600},
                {"from": "buyer", "to": "newcomer", "asset_code": "EUR", "amount": 200},
            ],
        },
        key=shop.tenant.admin_api_key,
    )

    assert netted["status"] == "applied"
    too_far = applied(
        shop,
        "/transactions",
        {
            **body,
            "postings": [
                {"from": "newcomer", "to": "buyer", "asset_code": "EUR", "amount": 300},
                {"from": "buyer", "to": "@tax", "asset_code": "EUR", "amount": 1},
            ],
        },
        key=shop.tenant.admin_api_key,
    )
    assert too_far["result"]["code"] == "insufficient_funds"
    assert too_far["result"]["message"].endswith("(wallet newcomer)")
    assert balance(shop, "newcomer") == 100


def test_names_the_tenant_lacks_are_refused_at_intake(shop: Api):
    unknown_account = shop.post(
        "/transactions",
        {
            "type": "spend",
            "user_id": "buyer",
            "asset_code": "EUR",
            "amount": 10,
            "reference_id": uuid.uuid4().hex,
            "splits": [{"to_account": "@nope", "amount": 10}],
        },
    )
    unknown_asset = shop.post(
        "/transactions",
        {
            "type": "exchange",
            "user_id": "buyer",
            "asset_code": "EUR",
            "amount": 10,
            "to_asset_code": "NOPE",
            "to_amount": 10,
            "reference_id": uuid.uuid4().hex,
        },
    )

    assert (unknown_account.status_code, unknown_account.get_json()["code"]) == (
        422,
        "unknown_system_account",
    )
    assert (unknown_asset.status_code, unknown_asset.get_json()["code"]) == (422, "unknown_asset")


def test_a_bulk_submission_takes_every_new_type(shop: Api):
    items = [
        {"type": "spend", "user_id": "buyer", "amount": 10_000, "splits": ORDER_LEGS},
        {"type": "payout", "user_id": "buyer", "amount": 100},
        {"type": "hold", "user_id": "buyer", "amount": 100, "to_account": "@payouts"},
        {
            "type": "exchange",
            "user_id": "buyer",
            "amount": 10,
            "to_asset_code": "EUR_X",
            "to_amount": 10,
        },
        {
            "type": "journal",
            "reason": "fix",
            "postings": [{"from": "@fees", "to": "@tax", "asset_code": "EUR", "amount": 1}],
        },
    ]
    shop.post(
        "/assets",
        {"code": "EUR_X", "name": "Other", "decimal_places": 2},
        key=shop.tenant.admin_api_key,
    )
    bodies = [{"asset_code": "EUR", "reference_id": uuid.uuid4().hex, **item} for item in items]
    for body in bodies:
        if body["type"] == "journal":
            del body["asset_code"]
    answer = shop.post(
        "/transactions/batch", {"transactions": bodies}, key=shop.tenant.admin_api_key
    )

    assert answer.status_code in (200, 202, 207), answer.get_json()
    results = answer.get_json()["results"]
    ids = [uuid.UUID(result["transaction"]["id"]) for result in results]
    post_transactions(shop.engine, ids)
    statuses = [shop.get(f"/transactions/{i}").get_json()["status"] for i in ids]
    assert statuses == ["applied"] * 5
