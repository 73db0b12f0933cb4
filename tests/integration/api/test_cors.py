"""CORS for wallet tokens: preflights are answered only for a wallet token's routes from
an origin some tenant allows; the request itself only from an origin its own tenant
allows, refused before anything is recorded; never with credentials."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask

from tests.conftest import TenantFixture, make_tenant
from tests.integration.api.conftest import Api
from tests.integration.api.test_wallet_tokens import refusal
from tests.integration.ledger.helpers import run

EUR = {"asset_code": "EUR"}
MINE = f"http://127.0.0.1:{5000 + uuid.uuid4().int % 1000}"
THEIRS = f"http://localhost:{6000 + uuid.uuid4().int % 1000}"
NOBODYS = "http://127.0.0.1:1"


def put_origins(api: Api, origins: list[str], tenant: TenantFixture | None = None) -> Any:
    key = (tenant or api.tenant).admin_api_key
    return api.request("PUT", "/cors-origins", json={"origins": origins}, key=key)


@pytest.fixture
def other(api: Api) -> TenantFixture:
    """Another tenant, which allows THEIRS."""
    tenant = make_tenant(api.engine)
    assert put_origins(api, [THEIRS], tenant).status_code == 200
    return tenant


@pytest.fixture
def browser_api(api: Api, other: TenantFixture) -> Api:
    run(api.engine, api.tenant.id, "topup", user_id="alice", amount=1_000)
    assert put_origins(api, [MINE]).status_code == 200
    return api


def token(api: Api, **fields: Any) -> str:
    answer = api.post("/wallet-tokens", {"user_id": "alice", "scopes": ["read", "spend"], **fields})
    assert answer.status_code == 201, answer.json
    return str(answer.json["token"])


def preflight(app: Flask, path: str, origin: str, method: str = "POST") -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return app.test_client().options(f"/api/v1{path}", headers=headers)


def no_cors(answer: Any) -> None:
    assert not [name for name, _ in answer.headers if name.startswith("Access-Control-")]


def test_origins_are_set_listed_checked_and_audited(api: Api):
    admin = api.tenant.admin_api_key
    put = put_origins(api, ["HTTP://127.0.0.1:5173", "https://shop.example:443", "http://[::1]:80"])
    assert put.status_code == 200
    expected = ["http://127.0.0.1:5173", "http://[::1]", "https://shop.example"]
    assert put.json["origins"] == expected
    assert api.get("/cors-origins").json["origins"] == expected
    for bad in ["ftp://x", "http://x/path", "http://x?q", "http://user@x", "x", "http://"]:
        refusal(put_origins(api, [bad]), 422, "invalid_origin")
    many = [f"http://127.0.0.1:{port}" for port in range(1000, 1051)]
    refusal(put_origins(api, many), 422, "invalid_origin")
    refusal(api.request("PUT", "/cors-origins", json={"origins": []}), 403, "admin_key_required")
    assert put_origins(api, []).json["origins"] == []
    actions = [e["action"] for e in api.get("/audit-events", key=admin).json["events"]]
    assert actions.count("cors_origins.updated") == 2


def test_a_preflight_is_answered_for_a_wallet_token_route_from_an_allowed_origin(
    app: Flask, browser_api: Api
):
    for path, method in [("/wallets/spend", "POST"), ("/wallets/alice/balance", "GET")]:
        answer = preflight(app, path, MINE, method)
        assert answer.status_code == 204
        assert answer.headers["Access-Control-Allow-Origin"] == MINE
        assert answer.headers["Vary"] == "Origin"
        assert answer.headers["Access-Control-Allow-Methods"] == "GET, POST"
        assert answer.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
        assert answer.headers["Access-Control-Max-Age"] == "600"
        assert "Access-Control-Allow-Credentials" not in answer.headers
    # Another tenant's origin passes the preflight: the request itself is checked.
    assert preflight(app, "/wallets/spend", THEIRS).headers["Access-Control-Allow-Origin"]


def test_no_preflight_for_an_api_key_route_or_an_origin_no_tenant_allows(
    app: Flask, browser_api: Api
):
    for path in ["/api-keys", "/wallet-tokens", "/cors-origins", "/wallets/topup"]:
        answer = preflight(app, path, MINE)
        assert answer.status_code == 204
        no_cors(answer)
    no_cors(preflight(app, "/wallets/spend", NOBODYS))


def test_a_wallet_token_from_an_allowed_origin_gets_cors_headers_and_an_api_key_never(
    browser_api: Api,
):
    api = browser_api
    answer = api.get("/wallets/alice/balance", key=token(api), query_string=EUR,
                     headers={"Origin": MINE})  # fmt: skip
    assert answer.status_code == 200 and answer.json["balance"] == 1_000
    assert answer.headers["Access-Control-Allow-Origin"] == MINE
    assert "Origin" in answer.headers["Vary"]
    assert "Location" in answer.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer.headers
    keyed = api.get("/wallets/alice/balance", query_string=EUR, headers={"Origin": MINE})
    assert keyed.status_code == 200
    no_cors(keyed)


def test_a_spend_from_an_origin_its_tenant_does_not_allow_is_refused_and_not_recorded(
    browser_api: Api,
):
    api = browser_api
    wallet_token = token(api, spend_limit=500)
    reference_id = uuid.uuid4().hex
    body = {"user_id": "alice", "amount": 100, "reference_id": reference_id, **EUR}
    refused = api.post("/wallets/spend", body, key=wallet_token, headers={"Origin": THEIRS})
    refusal(refused, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Credentials" not in refused.headers
    assert api.get("/transactions", query_string={"reference_id": reference_id}).status_code == 404
    history = api.get("/wallets/alice/transactions", query_string=EUR).json["items"]
    assert [item["type"] for item in history] == ["topup"]

    allowed = api.post("/wallets/spend", body, key=wallet_token, headers={"Origin": MINE})
    assert allowed.status_code == 202
    assert allowed.headers["Access-Control-Allow-Origin"] == MINE
    assert "Location" in allowed.headers["Access-Control-Expose-Headers"]


def test_a_change_of_origins_holds_at_once(browser_api: Api):
    api = browser_api
    wallet_token = token(api)
    read = {"key": wallet_token, "query_string": EUR, "headers": {"Origin": MINE}}
    assert api.get("/wallets/alice/balance", **read).status_code == 200
    assert put_origins(api, []).status_code == 200
    refusal(api.get("/wallets/alice/balance", **read), 403, "origin_not_allowed")
