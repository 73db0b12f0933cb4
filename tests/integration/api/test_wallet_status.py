"""Freezing is a merchant operation; lifting a freeze, closing and reopening are an admin's."""

from __future__ import annotations

import uuid

from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run


def _wallet_with_funds(api: Api) -> None:
    run(api.engine, api.tenant.id, "topup", user_id="carol", amount=1000)


def test_unfreeze_does_not_reopen_a_closed_wallet(api: Api):
    _wallet_with_funds(api)
    closed = api.request(
        "PATCH",
        "/wallets/carol",
        json={"asset_code": "EUR", "status": "closed"},
        key=api.tenant.admin_api_key,
    )
    assert closed.status_code == 200 and closed.json["status"] == "closed"

    for action, key in (("unfreeze", api.tenant.admin_api_key), ("freeze", None)):
        refused = api.post(f"/wallets/carol/{action}", {"asset_code": "EUR"}, key=key)
        assert refused.status_code == 409
        assert refused.json["code"] == "wallet_closed"
        assert refused.headers["Content-Type"] == "application/problem+json"

    balance = api.get("/wallets/carol/balance", query_string={"asset_code": "EUR"}).json
    assert balance["status"] == "closed"
    spend = run(api.engine, api.tenant.id, "spend", user_id="carol", amount=1)
    assert spend["status"] == "rejected"
    assert spend["result"]["code"] == "wallet_closed"


def test_only_an_admin_key_reopens_a_closed_wallet(api: Api):
    _wallet_with_funds(api)
    admin = api.tenant.admin_api_key
    api.request(
        "PATCH", "/wallets/carol", json={"asset_code": "EUR", "status": "closed"}, key=admin
    )

    by_merchant = api.request(
        "PATCH", "/wallets/carol", json={"asset_code": "EUR", "status": "active"}
    )
    assert by_merchant.status_code == 403
    assert by_merchant.json["code"] == "admin_key_required"

    reopened = api.request(
        "PATCH", "/wallets/carol", json={"asset_code": "EUR", "status": "active"}, key=admin
    )
    assert reopened.status_code == 200 and reopened.json["status"] == "active"
    spend = run(
        api.engine, api.tenant.id, "spend", user_id="carol", amount=1, reference_id=uuid.uuid4().hex
    )
    assert spend["status"] == "applied"


def test_an_ordinary_key_freezes_and_an_admin_key_unfreezes(api: Api):
    _wallet_with_funds(api)
    frozen = api.post("/wallets/carol/freeze", {"asset_code": "EUR"})
    assert frozen.status_code == 200 and frozen.json["status"] == "frozen"
    assert run(api.engine, api.tenant.id, "spend", user_id="carol", amount=1)["result"]["code"] == (
        "wallet_frozen"
    )
    assert api.post("/wallets/carol/unfreeze", {"asset_code": "EUR"}).status_code == 403
    active = api.post(
        "/wallets/carol/unfreeze", {"asset_code": "EUR"}, key=api.tenant.admin_api_key
    )
    assert active.status_code == 200 and active.json["status"] == "active"
