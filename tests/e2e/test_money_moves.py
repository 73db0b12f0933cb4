"""Splits, payouts, exchanges and journals over HTTP, once per broker: API → broker → worker →
PostgreSQL, every outcome read back by long-poll, never by a sleep.

One marketplace story: a buyer pays an order in three legs (the seller, @fees, @tax), gets
half of it back pro rata, the seller is paid out through a hold to @payouts and a payout, the
buyer exchanges euros for points, and an admin books a journal entry. At the end every
asset's wallets and system accounts sum to zero.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tally.webhook_receiver import WebhookReceiver
from tests.conftest import TenantFixture
from tests.e2e.webhook_helpers import register
from tests.support.stack import ApiClient, Stack, outcome_of


def ref() -> str:
    return uuid.uuid4().hex


def settle(client: ApiClient, **body: Any) -> dict[str, Any]:
    """Submit to `POST /transactions`, expect 202, long-poll the outcome, expect `applied`."""
    response = client.post("/transactions", {"reference_id": ref(), **body})
    assert response.status_code == 202, response.text
    outcome = outcome_of(client, response.json()["id"])
    assert (outcome["status"], outcome["result"]) == ("applied", None), outcome
    return outcome


def created(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def legs(outcome: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (leg.get("to_user_id") or leg["to_account"], leg["amount"]) for leg in outcome["splits"]
    ]


def wallet(client: ApiClient, user_id: str, asset: str = "EUR") -> tuple[int, int]:
    """(balance, pending) of a wallet."""
    response = client.get(f"/wallets/{user_id}/balance", params={"asset_code": asset})
    assert response.status_code == 200, response.text
    found = response.json()
    return found["balance"], found["pending"]


def system_accounts(client: ApiClient, asset: str) -> dict[str, int]:
    response = client.get("/system-accounts", params={"asset_code": asset})
    assert response.status_code == 200, response.text
    listed = response.json()
    assert {row["asset_code"] for row in listed} == {asset}
    return {row["name"]: row["balance"] for row in listed}


ORDER = [
    {"to_user_id": "seller", "amount": 9000},
    {"to_account": "@fees", "amount": 800},
    {"to_account": "@tax", "amount": 200},
]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def test_a_marketplace_order_is_split_refunded_paid_out_exchanged_and_journalled(
    stack: Stack, tenant: TenantFixture, receiver: WebhookReceiver
) -> None:
    client = stack.client(tenant.api_key)
    admin = stack.client(tenant.admin_api_key)
    endpoint = register(admin, receiver.url("applied"), event_types=["transaction.applied"])
    for name in ("@fees", "@tax"):
        assert created(admin.post("/system-accounts", {"name": name}))["name"] == name
    points = {"code": "POINTS", "name": "Points", "decimal_places": 0}
    assert created(admin.post("/assets", points))["code"] == "POINTS"
    settle(client, type="topup", user_id="buyer", asset_code="EUR", amount=20_000)

    # The order: 100.00 in three legs.
    order = settle(
        client, type="spend", user_id="buyer", asset_code="EUR", amount=10_000, splits=ORDER
    )
    assert legs(order) == [("seller", 9000), ("@fees", 800), ("@tax", 200)]
    assert order["balance_after"] == 10_000
    assert order["splits"][0]["balance_after"] == 9000
    assert "balance_after" not in order["splits"][1]
    history = client.get("/wallets/seller/transactions", params={"asset_code": "EUR"}).json()
    assert [(i["transaction_id"], i["type"], i["amount"]) for i in history["items"]] == [
        (order["id"], "spend", 9000)
    ]
    announced = receiver.first_delivered(
        "applied", lambda r: r.payload["data"]["id"] == order["id"], timeout=60
    )
    assert announced is not None, "no transaction.applied webhook for the order"
    payload = Webhook(endpoint["secret"]).verify(announced.body, announced.headers)
    assert payload["data"]["splits"] == order["splits"]

    # Half of it back, pro rata: 45.00 / 4.00 / 1.00.
    refund = settle(
        client,
        type="refund",
        user_id="buyer",
        asset_code="EUR",
        amount=5000,
        original_transaction_id=order["id"],
    )
    assert legs(refund) == [("seller", 4500), ("@fees", 400), ("@tax", 100)]
    assert (refund["balance_after"], refund["splits"][0]["balance_after"]) == (15_000, 4500)

    # Largest remainder: one cent over three equal legs goes to the first.
    even = settle(
        client,
        type="spend",
        user_id="buyer",
        asset_code="EUR",
        amount=300,
        splits=[{**leg, "amount": 100} for leg in ORDER],
    )
    cent = settle(
        client,
        type="refund",
        user_id="buyer",
        asset_code="EUR",
        amount=1,
        original_transaction_id=even["id"],
    )
    assert legs(cent) == [("seller", 1)]

    # The seller's payout, two-phase: a hold to @payouts, then its capture; then a payout.
    held = settle(
        client, type="hold", user_id="seller", asset_code="EUR", amount=3000, to_account="@payouts"
    )
    assert (held["to_account"], held["hold"]["status"]) == ("@payouts", "held")
    assert wallet(client, "seller") == (4599, 3000)
    captured = settle(client, type="capture", original_transaction_id=held["id"])
    assert (captured["amount"], captured["balance_after"]) == (3000, 1599)
    assert wallet(client, "seller") == (1599, 0)
    payout = settle(
        client,
        type="payout",
        user_id="seller",
        asset_code="EUR",
        amount=1000,
        payout_method="sepa",
        destination="DE89 **** **** 3000",
    )
    assert (payout["balance_after"], payout["payout_method"]) == (599, "sepa")

    # Euros for points, at the client's rate.
    exchange = settle(
        client,
        type="exchange",
        user_id="buyer",
        asset_code="EUR",
        amount=1000,
        to_asset_code="POINTS",
        to_amount=110_000,
    )
    assert (exchange["rate"], exchange["balance_after"], exchange["to_balance_after"]) == (
        "110",
        13_701,
        110_000,
    )

    # An admin's journal entry, across both assets.
    postings = [
        {"from": "@fees", "to": "@revenue", "asset_code": "EUR", "amount": 300},
        {"from": "@adjustments", "to": "buyer", "asset_code": "POINTS", "amount": 50},
    ]
    journal = settle(admin, type="journal", reason="monthly fee sweep", postings=postings)
    assert journal["postings"] == postings
    refused = client.post(
        "/transactions",
        {"type": "journal", "reference_id": ref(), "reason": "x", "postings": postings},
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_key_required")

    # Where all the money is, and that it sums to zero per asset.
    eur = {user: wallet(client, user)[0] for user in ("buyer", "seller")}
    assert eur == {"buyer": 13_701, "seller": 599}
    eur_accounts = system_accounts(client, "EUR")
    assert {name: eur_accounts[name] for name in ("@fees", "@tax", "@payouts", "@exchange")} == {
        "@fees": 800 - 400 + 100 - 300,
        "@tax": 200 - 100 + 100,
        "@payouts": 4000,
        "@exchange": 1000,
    }
    assert (eur_accounts["@topup"], eur_accounts["@revenue"]) == (-20_000, 300)
    assert sum(eur.values()) + sum(eur_accounts.values()) == 0
    point_accounts = system_accounts(client, "POINTS")
    assert (point_accounts["@exchange"], point_accounts["@adjustments"]) == (-110_000, -50)
    assert wallet(client, "buyer", "POINTS") == (110_050, 0)
    assert wallet(client, "buyer", "POINTS")[0] + sum(point_accounts.values()) == 0
