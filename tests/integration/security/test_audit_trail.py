"""Administrative actions leave an audit trail: who, what, on what, why."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.db import unit_of_work
from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run


def events(api: Api, **query: str) -> list[dict]:
    response = api.get("/audit-events", query_string=query, key=api.tenant.read_api_key)
    assert response.status_code == 200, response.json
    return response.json["events"]


def test_freezing_unfreezing_closing_and_a_limit_change_are_audited(api: Api, engine: Engine):
    run(engine, api.tenant.id, "topup", user_id="alice", amount=100)
    admin = api.tenant.admin_api_key
    api.post("/wallets/alice/freeze", {"asset_code": "EUR", "reason": "chargeback 81"})
    api.post("/wallets/alice/unfreeze", {"asset_code": "EUR", "reason": "resolved"}, key=admin)
    api.request(
        "PATCH", "/wallets/alice", json={"asset_code": "EUR", "credit_limit": 50}, key=admin
    )
    api.request(
        "PATCH", "/wallets/alice", json={"asset_code": "EUR", "status": "closed"}, key=admin
    )

    trail = [(e["action"], e["actor"], e["target"], e["details"]) for e in events(api)]

    write, admin_actor = f"key:{api.tenant.api_key[:12]}", f"key:{admin[:12]}"
    assert trail[:4] == [
        ("wallet.closed", admin_actor, "wallet:alice/EUR", {}),
        (
            "wallet.credit_limit_changed",
            admin_actor,
            "wallet:alice/EUR",
            {"before": 0, "after": 50},
        ),
        ("wallet.unfrozen", admin_actor, "wallet:alice/EUR", {"reason": "resolved"}),
        ("wallet.frozen", write, "wallet:alice/EUR", {"reason": "chargeback 81"}),
    ]


def test_creating_and_revoking_a_key_are_audited(api: Api):
    admin = api.tenant.admin_api_key
    created = api.post("/api-keys", {"scope": "read"}, key=admin).json
    api.request("DELETE", f"/api-keys/{created['id']}", key=admin)

    trail = [
        (e["action"], e["target"], e["details"]["key_id"])
        for e in events(api)
        if e["action"].startswith("api_key.")
    ][:2]

    target = f"api_key:{created['prefix']}"
    assert trail == [
        ("api_key.revoked", target, created["id"]),
        ("api_key.created", target, created["id"]),
    ]


def test_the_audit_trail_cannot_be_rewritten(api: Api, engine: Engine):
    api.post(
        "/wallets/topup", {"user_id": "bob", "asset_code": "EUR", "amount": 1, "reference_id": "r1"}
    )
    run(engine, api.tenant.id, "topup", user_id="carol", amount=1)
    api.post("/wallets/carol/freeze", {"asset_code": "EUR"})

    with pytest.raises(DBAPIError, match="append-only"), unit_of_work(engine) as work:
        work.connection.execute(
            text("UPDATE audit_events SET actor = 'nobody' WHERE tenant_id = :t"),
            {"t": api.tenant.id},
        )
    assert events(api, action="wallet.frozen")[0]["actor"].startswith("key:")


def test_webhook_endpoint_changes_are_audited_each_as_what_it_was(api: Api):
    admin = api.tenant.admin_api_key
    created = api.post("/webhook-endpoints", {"url": "https://1.1.1.1/a"}, key=admin).json
    path = f"/webhook-endpoints/{created['id']}"
    api.request("PATCH", path, json={"url": "https://1.1.1.1/b"}, key=admin)
    api.post(f"{path}/rotate-secret", {"overlap_seconds": 0}, key=admin)
    api.request("PATCH", path, json={"enabled": False}, key=admin)
    api.request("PATCH", path, json={"enabled": True}, key=admin)
    api.request("DELETE", path, key=admin)

    trail = [
        (e["action"], e["details"])
        for e in events(api)
        if e["target"] == f"webhook_endpoint:{created['id']}"
    ]

    assert trail == [
        ("webhook_endpoint.deleted", {}),
        ("webhook_endpoint.enabled", {}),
        ("webhook_endpoint.disabled", {}),
        ("webhook_endpoint.secret_rotated", {"overlap_seconds": 0}),
        (
            "webhook_endpoint.updated",
            {"url": {"before": "https://1.1.1.1/a", "after": "https://1.1.1.1/b"}},
        ),
        ("webhook_endpoint.created", {"url": "https://1.1.1.1/a"}),
    ]
