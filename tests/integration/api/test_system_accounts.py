"""System accounts over the API: defining one, listing them with balances, their journals."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from tests.conftest import assert_invariants, make_tenant
from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run

BUILTINS = ["@adjustments", "@bonus", "@exchange", "@payouts", "@revenue", "@topup"]


def define(api: Api, name: str, description: str | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("key", api.tenant.admin_api_key)
    body = {"name": name} if description is None else {"name": name, "description": description}
    return api.post("/system-accounts", body, **kwargs)


def listed(api: Api, **query: str) -> list[dict[str, Any]]:
    response = api.get("/system-accounts", query_string=query, key=api.tenant.read_api_key)
    assert response.status_code == 200, response.json
    return response.json


def history(api: Api, name: str, **query: Any) -> Any:
    return api.get(
        f"/system-accounts/{name}/transactions",
        query_string={"asset_code": "EUR", **query},
        key=api.tenant.read_api_key,
    )


def test_an_admin_key_defines_a_system_account_and_the_trail_records_it(api: Api):
    response = define(api, "@fees", "Card fees we keep")

    assert response.status_code == 201
    assert set(response.json) == {"name", "description", "created_at"}
    assert (response.json["name"], response.json["description"]) == ("@fees", "Card fees we keep")
    events = api.get(
        "/audit-events", query_string={"action": "system_account.created"}, key=api.tenant.api_key
    ).json["events"]
    assert [(e["target"], e["actor"], e["details"]) for e in events] == [
        (
            "system_account:@fees",
            f"key:{api.tenant.admin_api_key[:12]}",
            {"description": "Card fees we keep"},
        )
    ]


def test_a_name_defined_already_or_built_in_is_refused(api: Api):
    assert define(api, "@fees").status_code == 201

    again = define(api, "@fees", "another")
    built_in = define(api, "@topup")

    assert (again.status_code, again.json["code"]) == (409, "system_account_exists")
    assert (built_in.status_code, built_in.json["code"]) == (409, "system_account_exists")
    fees = [a for a in listed(api, asset_code="EUR") if a["name"] == "@fees"]
    assert [a["description"] for a in fees] == [None]


@pytest.mark.parametrize("name", ["@", "@Fees", "fees", "@" + "a" * 33, "@a-b", "@fees\n", 7])
def test_a_malformed_name_is_refused(api: Api, name: Any):
    response = api.post("/system-accounts", {"name": name}, key=api.tenant.admin_api_key)

    assert response.status_code == 422
    assert response.json["code"] == "validation_failed"
    assert set(response.json["errors"]) == {"name"}
    assert [a["name"] for a in listed(api, asset_code="EUR")] == BUILTINS


@pytest.mark.parametrize("description", ["x" * 501, "a\x00b"])
def test_a_description_too_long_or_with_nul_is_refused(api: Api, description: str):
    response = define(api, "@fees", description)

    assert response.status_code == 422
    assert set(response.json["errors"]) == {"description"}


def test_read_and_write_keys_cannot_define(api: Api):
    for key in (api.tenant.read_api_key, api.tenant.api_key):
        response = define(api, "@fees", key=key)
        assert (response.status_code, response.json["code"]) == (403, "admin_key_required")
    assert "@fees" not in {a["name"] for a in listed(api)}


def test_the_listing_shows_built_ins_and_defined_ones_with_their_balances(api: Api):
    for amount in (100, 250):
        run(api.engine, api.tenant.id, "topup", user_id="alice", amount=amount)
    run(api.engine, api.tenant.id, "spend", user_id="alice", amount=30)
    define(api, "@fees", "Card fees")

    accounts = listed(api, asset_code="EUR")

    assert [(a["name"], a["builtin"], a["balance"]) for a in accounts] == [
        ("@adjustments", True, 0),
        ("@bonus", True, 0),
        ("@exchange", True, 0),
        ("@fees", False, 0),
        ("@payouts", True, 0),
        ("@revenue", True, 30),
        ("@topup", True, -350),
    ]
    assert {a["asset_code"] for a in accounts} == {"EUR"}
    descriptions = {a["name"]: a["description"] for a in accounts}
    assert descriptions["@fees"] == "Card fees"
    assert all(descriptions[name] for name in BUILTINS)


def test_a_defined_account_has_a_row_in_every_asset_before_and_after_it(api: Api):
    admin = api.tenant.admin_api_key
    gold = {"code": "GOLD", "name": "Gold", "decimal_places": 0}
    assert api.post("/assets", gold, key=admin).status_code == 201
    define(api, "@fees")
    silver = {"code": "SILVER", "name": "Silver", "decimal_places": 0}
    assert api.post("/assets", silver, key=admin).status_code == 201

    accounts = listed(api)

    assert [(a["asset_code"], a["name"]) for a in accounts if not a["builtin"]] == [
        ("EUR", "@fees"),
        ("GOLD", "@fees"),
        ("SILVER", "@fees"),
    ]
    assert [a["asset_code"] for a in accounts] == ["EUR"] * 7 + ["GOLD"] * 7 + ["SILVER"] * 7
    with api.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT asset_code, is_system, balance FROM accounts"
                " WHERE tenant_id = :t AND owner = '@fees' ORDER BY asset_code"
            ),
            {"t": api.tenant.id},
        ).all()
    assert [tuple(row) for row in rows] == [
        ("EUR", True, 0),
        ("GOLD", True, 0),
        ("SILVER", True, 0),
    ]


def test_listing_an_unknown_asset_is_asset_not_found(api: Api):
    response = api.get("/system-accounts", query_string={"asset_code": "USD"})

    assert (response.status_code, response.json["code"]) == (404, "asset_not_found")


def test_a_system_accounts_history_pages_newest_first_without_overlap(api: Api):
    ids = [
        run(api.engine, api.tenant.id, "topup", user_id="alice", amount=amount)["id"]
        for amount in (100, 200, 300)
    ]

    first = history(api, "@topup", limit=2)
    second = history(api, "@topup", limit=2, cursor=first.json["next_cursor"])

    assert first.status_code == second.status_code == 200
    assert [i["transaction_id"] for i in first.json["items"]] == [ids[2], ids[1]]
    assert [i["transaction_id"] for i in second.json["items"]] == [ids[0]]
    assert second.json["next_cursor"] is None
    items = first.json["items"] + second.json["items"]
    assert [(i["amount"], i["balance_after"], i["type"]) for i in items] == [
        (-300, -600, "topup"),
        (-200, -300, "topup"),
        (-100, -100, "topup"),
    ]
    versions = [i["version"] for i in items]
    assert versions == sorted(versions, reverse=True)
    assert history(api, "%40topup", limit=2).json == first.json


def test_a_defined_account_without_entries_has_an_empty_history(api: Api):
    define(api, "@fees")

    response = history(api, "@fees")

    assert response.status_code == 200
    assert response.json == {"items": [], "next_cursor": None}


def test_history_of_an_unknown_name_asset_or_cursor_is_refused(api: Api):
    unknown = history(api, "@fees")
    malformed = history(api, "fees")
    no_asset = history(api, "@topup", asset_code="USD")
    bad_cursor = history(api, "@topup", cursor="bad!")
    foreign_cursor = history(api, "@topup", cursor="djI6MA")  # "v2:0"
    bad_limit = history(api, "@topup", limit=0)

    assert (unknown.status_code, unknown.json["code"]) == (404, "system_account_not_found")
    assert (malformed.status_code, malformed.json["code"]) == (422, "invalid_system_account_name")
    assert (no_asset.status_code, no_asset.json["code"]) == (404, "asset_not_found")
    assert (bad_cursor.status_code, bad_cursor.json["code"]) == (400, "invalid_cursor")
    assert (foreign_cursor.status_code, foreign_cursor.json["code"]) == (400, "invalid_cursor")
    assert (bad_limit.status_code, bad_limit.json["code"]) == (422, "validation_failed")


def test_another_tenant_sees_neither_the_definition_nor_the_balances(
    api: Api, app: Flask, engine: Engine
):
    run(engine, api.tenant.id, "topup", user_id="alice", amount=500)
    define(api, "@fees")
    other = make_tenant(engine, "other")
    other_api = Api(app.test_client(), other, engine)

    seen = listed(other_api, asset_code="EUR")

    assert [(a["name"], a["balance"]) for a in seen] == [(name, 0) for name in BUILTINS]
    assert history(other_api, "@fees").json["code"] == "system_account_not_found"
    assert history(other_api, "@topup").json["items"] == []
    # The name is the other tenant's to define too.
    assert define(other_api, "@fees").status_code == 201
    assert_invariants(engine, other.id)
