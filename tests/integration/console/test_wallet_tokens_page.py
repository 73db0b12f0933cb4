"""A wallet's page lists the user's live wallet tokens and revokes one through the API's own
use case (`revoke_wallet_token`), audited, for a key that may revoke through the API."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.wallet_tokens import issue_wallet_token, revoke_wallet_token
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console, applied


def issue(engine: Engine, tenant: TenantFixture, user_id: str = "alice", **limits: object) -> str:
    with unit_of_work(engine) as work:
        issued = issue_wallet_token(
            work,
            secret_box(),
            tenant.id,
            user_id=user_id,
            scopes=["read", "spend"],
            ttl=900,
            actor=OPERATOR,
            **limits,  # type: ignore[arg-type]
        )
    return str(issued["id"])


def revoked_at(engine: Engine, token_id: str) -> object:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT revoked_at FROM wallet_tokens WHERE id = :id"), {"id": token_id}
        ).scalar()


def token_audit(engine: Engine, tenant: TenantFixture) -> list[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        return [
            (row.action, row.actor, row.target, row.details.get("token_id", ""))
            for row in conn.execute(
                text(
                    "SELECT action, actor, target, details FROM audit_events"
                    " WHERE tenant_id = :t AND action LIKE 'wallet_token.%' ORDER BY id"
                ),
                {"t": tenant.id},
            )
        ]


def rows(page: str) -> dict[str, str]:
    """Each listed token's row, by its full id."""
    found = {}
    for row in page.split('<tr class="wallet-token" data-token="')[1:]:
        token_id, _, rest = row.partition('"')
        found[token_id] = rest.split("</tr>")[0]
    return found


def test_the_page_lists_live_tokens_not_expired_or_revoked_ones(
    reader: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    live = issue(engine, tenant, max_amount=1250, spend_limit=50000, asset_codes=["EUR"])
    expired = issue(engine, tenant)
    revoked = issue(engine, tenant)
    other_user = issue(engine, tenant, user_id="bob")
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(
                "UPDATE wallet_tokens SET expires_at = now() - interval '1 second' WHERE id = :id"
            ),
            {"id": expired},
        )
        revoke_wallet_token(work, tenant.id, uuid.UUID(revoked), actor=OPERATOR)
        work.connection.execute(
            text("UPDATE wallet_tokens SET spent = 1999 WHERE id = :id"), {"id": live}
        )

    page = reader.text("/wallets/alice")

    listed = rows(page)
    assert set(listed) == {live}
    row = listed[live]
    assert live[:8] in row and "read, spend" in row and "EUR" in row
    assert "12.50 EUR" in row  # max amount, in the asset's decimals
    assert "19.99 EUR / 500.00 EUR" in row  # spent / spend limit
    assert "UTC" in row
    table = page.split('id="wallet-tokens"')[1].split("</table>")[0]
    assert expired[:8] not in table and revoked[:8] not in table and other_user[:8] not in table
    assert 'class="revoke-token"' not in page  # a read key revokes nothing


def test_a_write_key_revokes_a_token_audited_with_its_key(
    writer: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    token = issue(engine, tenant)
    page = writer.text("/wallets/alice")
    target = f"/console/wallets/alice/wallet-tokens/{token}/revoke"
    assert f'action="{target}"' in page

    done = writer.post(target.removeprefix("/console"))

    assert done.status_code == 303
    assert done.headers["Location"].endswith("/console/wallets/alice?notice=token-revoked")
    assert revoked_at(engine, token) is not None
    after = writer.text("/wallets/alice?notice=token-revoked")
    assert "The wallet token is revoked." in after
    assert token not in rows(after) and "No live wallet tokens." in after
    prefix = writer.text("/").split('id="whoami">')[1].split(" ")[0]
    assert token_audit(engine, tenant)[-1] == (
        "wallet_token.revoked",
        f"key:{prefix}",
        "wallet:alice",
        token,
    )
    assert f"token {token}" in after  # the operator actions list it


def test_a_read_key_cannot_revoke(reader: Console, engine: Engine, tenant: TenantFixture) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    token = issue(engine, tenant)
    before = token_audit(engine, tenant)

    refused = reader.post(f"/wallets/alice/wallet-tokens/{token}/revoke")

    assert refused.status_code == 403
    assert revoked_at(engine, token) is None
    assert token_audit(engine, tenant) == before


def test_revoking_needs_the_session_csrf_token(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    token = issue(engine, tenant)
    path = f"/wallets/alice/wallet-tokens/{token}/revoke"

    assert admin.client.post(f"/console{path}").status_code == 403  # no token at all
    assert admin.post(path, csrf="not-the-token").status_code == 403

    assert revoked_at(engine, token) is None
    assert admin.post(path).status_code == 303
    assert revoked_at(engine, token) is not None


def test_a_token_of_another_wallet_or_unknown_is_not_found_and_stays_live(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)
    bobs = issue(engine, tenant, user_id="bob")

    assert admin.post(f"/wallets/alice/wallet-tokens/{bobs}/revoke").status_code == 404
    assert admin.post(f"/wallets/alice/wallet-tokens/{uuid.uuid4()}/revoke").status_code == 404
    assert admin.post("/wallets/alice/wallet-tokens/not-a-uuid/revoke").status_code == 404
    assert revoked_at(engine, bobs) is None
    assert [action for action, *_ in token_audit(engine, tenant)] == ["wallet_token.issued"]
