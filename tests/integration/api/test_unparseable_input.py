"""Inputs the JSON decoder or PostgreSQL cannot take are 4xx problems, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET_KEYS
from tests.integration.api.conftest import Api

TOPUP_WITH_HUGE_AMOUNT = (
    '{"user_id": "a", "asset_code": "EUR", "reference_id": "r", "amount": ' + "9" * 5000 + "}"
)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == code


def test_an_integer_longer_than_the_decoder_takes_is_malformed_json(api: Api):
    response = api.request(
        "POST",
        "/wallets/topup",
        data=TOPUP_WITH_HUGE_AMOUNT,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_an_asset_name_with_a_nul_character_is_refused(api: Api):
    response = api.post(
        "/assets",
        {"code": "NULTEST", "name": "bad\u0000name", "decimal_places": 2},
        key=api.tenant.admin_api_key,
    )
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"url": "http://[::1"}, "webhook_url_refused", id="unclosed-ipv6-bracket"),
        pytest.param({"url": "http://[zz/"}, "webhook_url_refused", id="bad-ipv6-literal"),
        pytest.param({"url": "http://example.com/\ud800"}, "validation_failed", id="surrogate"),
        pytest.param(
            {"url": "http://127.0.0.1:9/x", "description": "a\u0000b"},
            "validation_failed",
            id="nul-in-description",
        ),
    ],
)
def test_unstorable_webhook_endpoints_are_refused(api: Api, body, code):
    assert_problem(api.post("/webhook-endpoints", body, key=api.tenant.admin_api_key), 422, code)


def test_metrics_ask_for_the_token_when_one_is_set(database_url, redis_url):
    from api.app import create_app
    from config.settings import Settings

    app = create_app(
        Settings(
            webhook_secret_keys=WEBHOOK_SECRET_KEYS,
            database_url=database_url,
            broker_url=redis_url,
            queue="metrics-token-test",
            metrics_token="s3cret",
        )
    )
    client = app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json["code"] == "invalid_metrics_token"
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200
    assert b"tally_" in allowed.data
