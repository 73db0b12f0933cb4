"""Tenant isolation is the database's: the API's role sees only the bound tenant's rows."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.assets import create_asset
from ledger.db import tenant_scope, unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run


@pytest.fixture
def two_tenants(engine: Engine, tenant: TenantFixture) -> tuple[uuid.UUID, uuid.UUID]:
    with unit_of_work(engine) as work:
        other = create_tenant(work, "other merchant")
        issue_api_key(work, other, "write")["api_key"]
        create_asset(work, other, "EUR", "Euro", 2)
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    run(engine, other, "topup", user_id="bob", amount=200)
    return tenant.id, other


def test_a_query_without_a_tenant_filter_sees_only_the_bound_tenants_rows(make_app, two_tenants):
    mine, _theirs = two_tenants
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(mine), api_engine.connect() as conn:
        seen = {
            table: set(conn.execute(text(f"SELECT DISTINCT tenant_id FROM {table}")).scalars())
            for table in ("transactions", "accounts", "entries", "events", "api_keys", "assets")
        }
        owners = set(conn.execute(text("SELECT owner FROM accounts WHERE NOT is_system")).scalars())
        tenants = set(conn.execute(text("SELECT id FROM tenants")).scalars())

    assert seen == {table: {mine} for table in seen}
    assert owners == {"alice"}
    assert tenants == {mine}


def test_before_a_tenant_is_bound_the_api_role_sees_nothing(make_app, two_tenants):
    api_engine = make_app().extensions["tally"].engine

    with api_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM transactions")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0


def test_the_api_role_cannot_write_another_tenants_rows(make_app, two_tenants):
    mine, theirs = two_tenants
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(mine), api_engine.connect() as conn:
        changed = conn.execute(
            text("UPDATE accounts SET credit_limit = 5 WHERE tenant_id = :t"), {"t": theirs}
        ).rowcount
        conn.rollback()
        with pytest.raises(DBAPIError, match="row-level security"):
            conn.execute(
                text("INSERT INTO assets (tenant_id, code, name, decimal_places)"
                     " VALUES (:t, 'GOLD', 'Gold', 0)"),
                {"t": theirs},
            )  # fmt: skip
    assert changed == 0


def test_the_api_role_owns_nothing_and_cannot_bypass_row_level_security(make_app, two_tenants):
    api_engine = make_app().extensions["tally"].engine

    with api_engine.connect() as conn:
        role = conn.execute(
            text(
                "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles"
                " WHERE rolname = current_user"
            )
        ).one()
        owned = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
                " AND tableowner = current_user"
            )
        ).scalar()
        with pytest.raises(DBAPIError, match="permission denied"):
            conn.execute(text("DELETE FROM entries"))

    assert tuple(role) == ("tally_api", False, False)
    assert owned == 0


def test_every_tenant_table_has_row_level_security_enabled_forced_and_a_tenant_policy(
    engine: Engine,
):
    with engine.connect() as conn:
        tenant_tables = set(
            conn.execute(
                text(
                    "SELECT table_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND column_name = 'tenant_id'"
                )
            ).scalars()
        ) | {"tenants"}
        protected = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c"
                    " JOIN pg_policies p ON p.tablename = c.relname"
                    "  AND p.policyname = 'tenant_isolation' AND 'tally_api' = ANY (p.roles)"
                    " WHERE c.relrowsecurity AND c.relforcerowsecurity"
                )
            ).scalars()
        )
    assert tenant_tables <= protected, tenant_tables - protected


def tables_owner(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT tableowner FROM pg_tables WHERE tablename = 'transactions'")
            ).scalar_one()
        )


def test_reset_role_on_the_api_connection_still_sees_only_the_bound_tenant(
    make_app, two_tenants, engine: Engine
):
    """The API logs in as its own role: there is no owner underneath to climb back to."""
    mine, _theirs = two_tenants
    api_engine = make_app().extensions["tally"].engine

    with tenant_scope(mine), api_engine.connect() as conn:
        conn.execute(text("RESET ROLE"))
        user = conn.execute(text("SELECT current_user")).scalar_one()
        seen = set(conn.execute(text("SELECT DISTINCT tenant_id FROM transactions")).scalars())
        tenants = set(conn.execute(text("SELECT id FROM tenants")).scalars())

    assert user == "tally_api"
    assert seen == {mine}
    assert tenants == {mine}


def test_the_api_connection_cannot_set_role_to_the_owner(make_app, two_tenants, engine: Engine):
    mine, _theirs = two_tenants
    api_engine = make_app().extensions["tally"].engine
    owner = tables_owner(engine)

    with tenant_scope(mine), api_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="permission denied"):
            conn.execute(text(f'SET ROLE "{owner}"'))
        conn.rollback()
        seen = set(conn.execute(text("SELECT DISTINCT tenant_id FROM transactions")).scalars())

    assert seen == {mine}
