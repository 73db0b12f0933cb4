"""Forms need the session's CSRF token; another tenant's records are not there at all."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console, applied, failed
from tests.integration.ledger.helpers import status


def wallet_status(engine: Engine, tenant: TenantFixture, user_id: str) -> str:
    from ledger.queries import get_balance

    with unit_of_work(engine) as work:
        return str(get_balance(work.connection, tenant.id, user_id, "EUR")["status"])


@pytest.mark.parametrize("token", [None, "", "not-the-token"], ids=["missing", "empty", "wrong"])
def test_a_form_without_the_sessions_csrf_token_is_refused_403_and_changes_nothing(
    admin: Console, engine: Engine, tenant: TenantFixture, token: str | None
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    form = {"reason": "suspected fraud"}
    if token is not None:
        form["csrf_token"] = token

    answer = admin.client.post("/console/wallets/alice/EUR/freeze", data=form)

    assert answer.status_code == 403
    assert "csrf_token_invalid" in answer.get_data(as_text=True)
    assert wallet_status(engine, tenant, "alice") == "active"


def test_another_sessions_token_does_not_pass(
    admin: Console, writer: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)

    answer = admin.post("/wallets/alice/EUR/freeze", {"reason": "x"}, csrf=writer.csrf)

    assert answer.status_code == 403
    assert wallet_status(engine, tenant, "alice") == "active"


@pytest.fixture
def other_tenant(engine: Engine) -> TenantFixture:
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, f"other-{uuid.uuid4().hex[:8]}")
        key = issue_api_key(work, tenant_id, "admin")["api_key"]
        create_asset(work, tenant_id, "EUR", "Euro", 2)
    return TenantFixture(tenant_id, key, key)


def test_another_tenants_transaction_is_not_found(
    admin: Console, engine: Engine, other_tenant: TenantFixture
) -> None:
    theirs = applied(engine, other_tenant.id, "topup", user_id="bob", amount=100)
    their_failure = failed(engine, other_tenant.id, user_id="bob", amount=100)

    assert admin.get(f"/transactions/{theirs.id}").status_code == 404
    assert (
        admin.get(f"/transactions?q={theirs.transaction['reference_id']}")
        .get_data(as_text=True)
        .count('class="transaction ')
        == 0
    )
    # Nor can it be acted on.
    assert admin.post(f"/transactions/{their_failure.id}/requeue").status_code == 404
    assert status(engine, other_tenant.id, their_failure.id)["status"] == "failed"


def test_another_tenants_wallet_is_not_found_and_cannot_be_frozen(
    admin: Console, engine: Engine, other_tenant: TenantFixture
) -> None:
    applied(engine, other_tenant.id, "topup", user_id="bob", amount=100)

    assert admin.get("/wallets/bob").status_code == 404
    assert admin.post("/wallets/bob/EUR/freeze", {"reason": "x"}).status_code == 404
    assert wallet_status(engine, other_tenant, "bob") == "active"


def test_another_tenants_webhook_endpoint_is_not_found(
    admin: Console, engine: Engine, other_tenant: TenantFixture
) -> None:
    from ledger.webhooks.endpoints import create_endpoint

    with unit_of_work(engine) as work:
        endpoint = create_endpoint(
            work,
            other_tenant.id,
            box=secret_box(),
            url="http://127.0.0.1:9/hooks",
            allow_private=True,
        )

    assert admin.get(f"/webhooks/{endpoint['id']}").status_code == 404
    assert admin.post(f"/webhooks/{endpoint['id']}/rotate-secret").status_code == 404


def test_an_unknown_or_malformed_id_is_not_found(admin: Console) -> None:
    assert admin.get(f"/transactions/{uuid.uuid4()}").status_code == 404
    assert admin.get("/transactions/not-a-uuid").status_code == 404
    assert admin.get("/wallets/nobody").status_code == 404
