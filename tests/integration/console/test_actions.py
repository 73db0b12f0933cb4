"""The console's actions: each goes through the ledger function the API uses and is
authorized by the API route's own scope, so a read key changes nothing and a write key no
more than it could through the API."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.queries import get_balance
from ledger.webhooks.endpoints import create_endpoint
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console, applied, failed
from tests.integration.ledger.helpers import status

ACTION_MARKS = [
    'id="requeue"',
    'class="freeze-link',
    'class="unfreeze-link',
    'class="close-link',
    'id="send-test"',
    'id="recover"',
    'id="rotate-secret"',
    'id="disable"',
    'class="redeliver"',
]


def wallet(engine: Engine, tenant: TenantFixture, user_id: str) -> dict:
    with unit_of_work(engine) as work:
        return get_balance(work.connection, tenant.id, user_id, "EUR")


def audit_actions(engine: Engine, tenant: TenantFixture) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            (row.action, row.actor, row.details.get("reason", ""))
            for row in conn.execute(
                text(
                    "SELECT action, actor, details FROM audit_events"
                    " WHERE tenant_id = :t ORDER BY id"
                ),
                {"t": tenant.id},
            )
        ]


@pytest.fixture
def endpoint(engine: Engine, tenant: TenantFixture) -> dict:
    with unit_of_work(engine) as work:
        return create_endpoint(
            work, tenant.id, box=secret_box(), url="http://127.0.0.1:9/hooks", allow_private=True
        )


def test_a_read_key_sees_no_action_and_a_forged_post_is_refused(
    reader: Console, engine: Engine, tenant: TenantFixture, endpoint: dict
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    broken = failed(engine, tenant.id, user_id="alice", amount=5)
    before = audit_actions(engine, tenant)
    pages = [
        reader.text("/wallets/alice"),
        reader.text(f"/transactions/{broken.id}"),
        reader.text(f"/webhooks/{endpoint['id']}"),
    ]

    for page in pages:
        for mark in ACTION_MARKS:
            assert mark not in page, mark
    assert 'id="nav-keys"' not in pages[0]
    # With a valid session and CSRF token, every action is still the API's 403.
    assert reader.post("/wallets/alice/EUR/freeze", {"reason": "forged"}).status_code == 403
    assert reader.post(f"/transactions/{broken.id}/requeue").status_code == 403
    assert reader.post(f"/webhooks/{endpoint['id']}/rotate-secret").status_code == 403
    assert reader.post(f"/webhooks/{endpoint['id']}/test").status_code == 403
    assert reader.get("/keys").status_code == 403
    assert reader.post("/keys", {"scope": "admin"}).status_code == 403
    assert wallet(engine, tenant, "alice")["status"] == "active"
    assert status(engine, tenant.id, broken.id)["status"] == "failed"
    assert audit_actions(engine, tenant) == before


def test_a_write_key_freezes_with_a_reason_but_cannot_unfreeze_as_in_the_api(
    writer: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    confirm = writer.text("/wallets/alice/EUR/freeze")
    assert 'id="confirm"' in confirm and 'name="reason"' in confirm

    done = writer.post("/wallets/alice/EUR/freeze", {"reason": "chargeback storm"})

    assert done.status_code == 303
    assert "notice=frozen" in done.headers["Location"]
    assert wallet(engine, tenant, "alice")["status"] == "frozen"
    page = writer.text("/wallets/alice?notice=frozen")
    assert "The wallet is frozen." in page and "chargeback storm" in page
    assert 'class="unfreeze-link' not in page
    assert writer.post("/wallets/alice/EUR/unfreeze", {"reason": "x"}).status_code == 403
    assert writer.get("/wallets/alice/EUR/unfreeze").status_code == 403
    assert wallet(engine, tenant, "alice")["status"] == "frozen"
    prefix = writer.text("/").split('id="whoami">')[1].split(" ")[0]
    assert audit_actions(engine, tenant)[-1] == (
        "wallet.frozen",
        f"key:{prefix}",
        "chargeback storm",
    )


def test_a_wallet_action_needs_a_reason(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)

    assert admin.post("/wallets/alice/EUR/close", {"reason": "  "}).status_code == 422
    assert wallet(engine, tenant, "alice")["status"] == "active"
    assert admin.post("/wallets/alice/EUR/close", {"reason": "account deleted"}).status_code == 303
    assert wallet(engine, tenant, "alice")["status"] == "closed"


def test_an_admin_requeues_a_failed_transaction_audited_and_it_applies(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    from ledger.posting import post_transactions

    broken = failed(engine, tenant.id, user_id="alice", amount=700)
    before = len(audit_actions(engine, tenant))
    page = admin.text(f"/transactions/{broken.id}")
    assert 'id="requeue-button"' in page and "the disk caught fire" in page

    assert admin.post(f"/transactions/{broken.id}/requeue").status_code == 303
    assert status(engine, tenant.id, broken.id)["status"] == "queued"
    assert admin.post(f"/transactions/{broken.id}/requeue").status_code == 409  # not failed now
    post_transactions(engine, [broken.id])

    assert status(engine, tenant.id, broken.id)["status"] == "applied"
    assert "transaction.requeued" in admin.text(f"/transactions/{broken.id}")
    assert [action for action, _, _ in audit_actions(engine, tenant)[before:]] == [
        "transaction.requeued"
    ]


def test_an_admin_creates_a_key_shown_once_and_revokes_it(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    before = len(audit_actions(engine, tenant))
    created = admin.post("/keys", {"scope": "read"})
    assert created.status_code == 201
    key = re.search(r'id="new-key">([^<]+)<', created.get_data(as_text=True)).group(1)

    listing = admin.text("/keys")
    assert key not in listing  # shown once
    fresh = Console(admin.client.application.test_client())
    assert fresh.sign_in(key).status_code == 303
    revoke = re.findall(r'action="(/console/keys/[0-9a-f-]+/revoke)"', listing)
    key_prefix = key[:14]
    # Revoke the new key: the one whose row shows its prefix.
    row = next(r for r in listing.split('<tr class="key') if key_prefix[:10] in r)
    target = re.search(r'action="/console(/keys/[0-9a-f-]+/revoke)"', row).group(1)
    assert revoke
    assert admin.post(target).status_code == 303
    assert fresh.get("/").status_code == 303  # its session ended with it
    assert [a for a, _, _ in audit_actions(engine, tenant)[before:]] == [
        "api_key.created",
        "api_key.revoked",
    ]


def test_an_admin_rotates_an_endpoint_secret_shown_once_and_disables_it(
    admin: Console, engine: Engine, tenant: TenantFixture, endpoint: dict
) -> None:
    rotated = admin.post(f"/webhooks/{endpoint['id']}/rotate-secret")

    assert rotated.status_code == 200
    secret = re.search(r'id="new-secret">([^<]+)<', rotated.get_data(as_text=True)).group(1)
    assert secret.startswith("whsec_") and secret != endpoint["secret"]
    assert secret not in admin.text(f"/webhooks/{endpoint['id']}")
    assert admin.post(f"/webhooks/{endpoint['id']}/disable").status_code == 303
    assert 'id="enable"' in admin.text(f"/webhooks/{endpoint['id']}")
    assert admin.post(f"/webhooks/{endpoint['id']}/test").status_code == 409  # disabled


def test_a_write_key_sends_a_test_event_and_recovers_but_cannot_rotate(
    writer: Console, engine: Engine, tenant: TenantFixture, endpoint: dict
) -> None:
    assert writer.post(f"/webhooks/{endpoint['id']}/test").status_code == 303
    recovered = writer.post(f"/webhooks/{endpoint['id']}/recover", {"since": "2026-01-01T00:00"})
    assert recovered.status_code == 200 and 'id="recovered">0 ' in recovered.get_data(as_text=True)
    assert writer.post(f"/webhooks/{endpoint['id']}/rotate-secret").status_code == 403

    page = writer.text(f"/webhooks/{endpoint['id']}")
    assert page.count('class="delivery"') == 1 and "webhook.test" in page
