"""A wallet token's requests are bound to its user in the database too: under the API's
role, with `tally.user_id` set, reads see only that user's wallet (migration 0013)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from ledger.db import tenant_scope
from ledger.errors import WalletNotFound
from ledger.holds import list_holds
from ledger.queries import wallet_account_id
from ledger.statements import ENTRIES
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run
from tests.integration.security.test_row_level_security_plans import entries_index_conditions


@pytest.fixture
def wallets(engine: Engine, tenant: TenantFixture) -> TenantFixture:
    for user in ("alice", "bob"):
        run(engine, tenant.id, "topup", user_id=user, amount=1_000)
        run(engine, tenant.id, "spend", user_id=user, amount=100)
        run(engine, tenant.id, "hold", user_id=user, amount=50)
    run(engine, tenant.id, "transfer", user_id="bob", to_user_id="alice", amount=10)
    return tenant


def test_a_query_without_a_user_filter_sees_only_the_bound_users_wallet(
    make_app, engine: Engine, wallets: TenantFixture
) -> None:
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(wallets.id, "alice"), api_engine.connect() as conn:
        owners = set(conn.execute(text("SELECT owner FROM accounts WHERE NOT is_system")))
        users = set(conn.execute(text("SELECT user_id, to_user_id FROM transactions")))
        entry_owners = set(
            conn.execute(
                text("SELECT a.owner FROM entries e JOIN accounts a ON a.id = e.account_id")
            ).scalars()
        )
        all_entries = conn.execute(text("SELECT count(*) FROM entries")).scalar_one()
        hold_owners = set(
            conn.execute(
                text("SELECT a.owner FROM holds h JOIN accounts a ON a.id = h.account_id")
            ).scalars()
        )
        all_holds = conn.execute(text("SELECT count(*) FROM holds")).scalar_one()

    assert owners == {("alice",)}
    # Alice's own, and bob's transfer to her: nothing else of bob's.
    assert all(user == "alice" or to_user == "alice" for user, to_user in users), users
    assert ("bob", "alice") in users and len(users) >= 2
    assert entry_owners == {"alice"}
    with engine.connect() as conn:
        hers = conn.execute(
            text(
                "SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id"
                " WHERE e.tenant_id = :t AND a.owner = 'alice'"
            ),
            {"t": wallets.id},
        ).scalar_one()
    assert all_entries == hers == 3  # topup, spend, the transfer in (a hold posts none)
    assert hold_owners == {"alice"} and all_holds == 1


def test_without_a_user_the_api_role_sees_the_whole_tenant(make_app, wallets):
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(wallets.id), api_engine.connect() as conn:
        owners = set(conn.execute(text("SELECT owner FROM accounts WHERE NOT is_system")).scalars())
        holds = conn.execute(text("SELECT count(*) FROM holds")).scalar_one()

    assert owners == {"alice", "bob"} and holds == 2


def test_the_ledgers_own_reads_answer_only_the_users_wallet(make_app, wallets):
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(wallets.id, "alice"), api_engine.connect() as conn:
        assert wallet_account_id(conn, wallets.id, "alice", "EUR")
        assert len(list_holds(conn, wallets.id, "alice", "EUR")["items"]) == 1
        for read in (wallet_account_id, list_holds):
            with pytest.raises(WalletNotFound):
                read(conn, wallets.id, "bob", "EUR")


def test_a_bound_user_leaves_the_statement_reads_their_index_range(
    make_app, engine: Engine, wallets: TenantFixture
) -> None:
    with engine.connect() as conn:
        account = wallet_account_id(conn, wallets.id, "alice", "EUR")
    api_engine = make_app().extensions["tally"].engine
    now = datetime.now(UTC)
    params = {
        "id": account, "start": now - timedelta(days=1), "end": now,
        "after_at": now - timedelta(days=1), "after_id": 0, "known_at": None, "limit": 100,
    }  # fmt: skip
    with tenant_scope(wallets.id, "alice"), api_engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        explained = "\n".join(conn.execute(text(f"EXPLAIN {ENTRIES.text}"), params).scalars())
    assert "(effective_at > " in " ".join(entries_index_conditions(explained)), explained


def test_failed_wallet_tokens_count_against_the_address(make_app, tenant: TenantFixture):
    client = make_app(auth_failures_per_minute=3).test_client()
    auth = {"Authorization": f"Bearer {tenant.api_key}"}
    issued = client.post("/api/v1/wallet-tokens", json={"user_id": "alice"}, headers=auth)
    header, payload, _signature = issued.json["token"].split(".")
    forged = {"Authorization": f"Bearer {header}.{payload}.c2ln"}
    path = "/api/v1/wallets/alice/balance?asset_code=EUR"

    codes = [client.get(path, headers=forged).json["code"] for _ in range(4)]

    assert codes == ["invalid_wallet_token"] * 3 + ["too_many_auth_failures"]
