"""Key scopes: admin does everything, write submits and freezes, read only reads."""

from __future__ import annotations

import uuid

from flask import Flask
from sqlalchemy import Engine, text

from tests.conftest import TenantFixture
from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run

PUBLIC_URL = "https://1.1.1.1/hooks"  # a literal: no DNS, and nothing is ever sent to it


def topup(user_id: str = "alice") -> dict:
    return {
        "user_id": user_id,
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
    }


def test_a_read_key_reads_but_cannot_submit_or_freeze(api: Api, engine: Engine):
    run(engine, api.tenant.id, "topup", user_id="alice", amount=100)
    read = api.tenant.read_api_key

    balance = api.get("/wallets/alice/balance?asset_code=EUR", key=read)
    submitted = api.post("/wallets/topup", topup(), key=read)
    frozen = api.post("/wallets/alice/freeze", {"asset_code": "EUR"}, key=read)

    assert balance.status_code == 200
    assert (submitted.status_code, submitted.json["code"]) == (403, "write_key_required")
    assert (frozen.status_code, frozen.json["code"]) == (403, "write_key_required")
    assert "insufficient_scope" in submitted.headers["WWW-Authenticate"]
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM transactions WHERE tenant_id = :t"), {"t": api.tenant.id}
        ).scalar()
    assert count == 1


def test_a_read_key_reads_reports_and_statements_and_only_an_admin_key_closes(
    api: Api, engine: Engine
):
    run(engine, api.tenant.id, "topup", user_id="alice", amount=100)
    read, write = api.tenant.read_api_key, api.tenant.api_key
    eur = "asset_code=EUR"
    december_first = "from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z"

    reads = [
        api.get(f"/reports/balances?{eur}", key=read),
        api.get(f"/reports/movements?{eur}&{december_first}&interval=day", key=read),
        api.get(f"/wallets/alice/statement?{eur}&from=2026-12-01T00:00:00Z", key=read),
        api.get("/periods", key=read),
    ]
    through = {"through": "2026-11-01T00:00:00Z"}
    by_read = api.post("/periods/close", through, key=read)
    by_write = api.post("/periods/close", through, key=write)

    assert [answer.status_code for answer in reads] == [200, 200, 200, 200]
    assert (by_read.status_code, by_read.json["code"]) == (403, "admin_key_required")
    assert (by_write.status_code, by_write.json["code"]) == (403, "admin_key_required")
    with engine.connect() as conn:
        closes = conn.execute(
            text("SELECT count(*) FROM period_closes WHERE tenant_id = :t"), {"t": api.tenant.id}
        ).scalar()
    assert closes == 0


def test_a_write_key_cannot_lift_a_freeze(api: Api, engine: Engine):
    run(engine, api.tenant.id, "topup", user_id="alice", amount=100)
    eur = {"asset_code": "EUR"}
    assert api.post("/wallets/alice/freeze", eur, key=api.tenant.admin_api_key).status_code == 200

    lifted = api.post("/wallets/alice/unfreeze", eur)
    status = api.get("/wallets/alice/balance?asset_code=EUR").json["status"]

    assert (lifted.status_code, lifted.json["code"]) == (403, "admin_key_required")
    assert status == "frozen"
    assert api.post("/wallets/alice/unfreeze", eur, key=api.tenant.admin_api_key).status_code == 200


def test_a_write_key_cannot_register_repoint_or_rotate_webhook_endpoints(api: Api):
    admin = api.tenant.admin_api_key
    created = api.post("/webhook-endpoints", {"url": PUBLIC_URL}, key=admin).json
    path = f"/webhook-endpoints/{created['id']}"

    attempts = [
        api.post("/webhook-endpoints", {"url": PUBLIC_URL}),
        api.request("PATCH", path, json={"url": "https://8.8.8.8/mine"}),
        api.post(f"{path}/rotate-secret", {}),
        api.request("DELETE", path),
    ]

    assert [(r.status_code, r.json["code"]) for r in attempts] == [(403, "admin_key_required")] * 4
    assert api.get(path).json["url"] == PUBLIC_URL
    assert len(api.get("/webhook-endpoints").json) == 1


def test_only_admin_keys_manage_keys(api: Api):
    for key in (api.tenant.api_key, api.tenant.read_api_key):
        assert api.get("/api-keys", key=key).status_code == 403
        assert api.post("/api-keys", {"scope": "admin"}, key=key).status_code == 403

    created = api.post("/api-keys", {"scope": "write"}, key=api.tenant.admin_api_key)

    assert created.status_code == 201
    assert api.post("/wallets/topup", topup(), key=created.json["api_key"]).status_code == 202


def test_a_revoked_key_is_refused_at_once_by_the_process_that_revoked_it(api: Api):
    created = api.post("/api-keys", {"scope": "read"}, key=api.tenant.admin_api_key).json
    assert api.get("/assets", key=created["api_key"]).status_code == 200

    api.request("DELETE", f"/api-keys/{created['id']}", key=api.tenant.admin_api_key)

    assert api.get("/assets", key=created["api_key"]).status_code == 401


def test_a_key_records_when_it_was_last_used(api: Api, tenant: TenantFixture):
    before = {k["prefix"]: k for k in api.get("/api-keys", key=tenant.admin_api_key).json}
    read_prefix = tenant.read_api_key[:12]
    assert before[read_prefix]["last_used_at"] is None

    api.get("/assets", key=tenant.read_api_key)

    after = {k["prefix"]: k for k in api.get("/api-keys", key=tenant.admin_api_key).json}
    assert after[read_prefix]["last_used_at"] is not None
    assert after[read_prefix]["scope"] == "read"


def test_an_adjustment_needs_an_admin_key(app: Flask, api: Api):
    body = {**topup(), "type": "adjustment", "amount": -5, "reason": "fee"}

    refused = api.post("/transactions", body)
    accepted = api.post("/transactions", body, key=api.tenant.admin_api_key)

    assert (refused.status_code, refused.json["code"]) == (403, "admin_key_required")
    assert accepted.status_code == 202
