"""The Alembic migrations build, from nothing, exactly the schema the models describe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from config.database_urls import login_as, sqlalchemy_url
from ledger.schema import metadata
from tally.migrate import alembic_config, upgrade
from tests.conftest import secret_box


@pytest.fixture
def empty_database(database_server_url: str) -> Iterator[str]:
    """A newly created, empty database on the test server; dropped afterwards."""
    name = f"tally_migrate_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(database_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = database_server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_differences(database_url: str) -> list:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def tables(database_url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_builds_every_table_on_an_empty_database(empty_database):
    upgrade(empty_database)

    assert tables(empty_database) == set(metadata.tables) | {"alembic_version"}
    engine = create_engine(sqlalchemy_url(empty_database))
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert head == ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()


def test_the_migrated_schema_matches_the_models(empty_database):
    upgrade(empty_database)

    assert schema_differences(empty_database) == []


def test_upgrading_twice_is_harmless(empty_database):
    upgrade(empty_database)
    upgrade(empty_database)

    assert schema_differences(empty_database) == []


def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(empty_database):
    upgrade(empty_database)

    command.downgrade(alembic_config(empty_database), "base")
    assert tables(empty_database) == {"alembic_version"}

    upgrade(empty_database)
    assert schema_differences(empty_database) == []


def _money_rows(database_url: str, topup: int) -> None:
    """A tenant whose @topup took in `topup` for alice, as the ledger would write it."""
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('money') RETURNING id")
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO assets (tenant_id, code, name, decimal_places)"
                " VALUES (:t, 'WEI', 'Wei', 18)"
            ),
            {"t": tenant},
        )
        conn.execute(
            text(
                "INSERT INTO accounts (tenant_id, asset_code, owner, is_system, balance)"
                " VALUES (:t, 'WEI', '@topup', true, :b), (:t, 'WEI', 'alice', false, :a)"
            ),
            {"t": tenant, "b": -topup, "a": topup},
        )
    engine.dispose()


def _column_type(database_url: str, table: str, column: str) -> str:
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = CAST(:table AS regclass) AND attname = :column"
            ),
            {"table": table, "column": column},
        ).scalar_one()
    engine.dispose()
    return found


def test_money_128_downgrades_to_bigint_when_the_money_fits_and_upgrades_again(empty_database):
    upgrade(empty_database)
    _money_rows(empty_database, 10 * 10**18 // 2)

    command.downgrade(alembic_config(empty_database), "0006")
    assert _column_type(empty_database, "accounts", "balance") == "bigint"
    assert _column_type(empty_database, "transactions", "amount") == "bigint"

    upgrade(empty_database)
    assert _column_type(empty_database, "accounts", "balance") == "numeric(1000,0)"
    assert _column_type(empty_database, "entries", "amount") == "numeric(39,0)"
    assert schema_differences(empty_database) == []


def test_money_128_refuses_to_downgrade_money_bigint_cannot_hold(empty_database):
    upgrade(empty_database)
    _money_rows(empty_database, 2**100)

    with pytest.raises(RuntimeError, match="beyond"):
        command.downgrade(alembic_config(empty_database), "0006")
    assert _column_type(empty_database, "accounts", "balance") == "numeric(1000,0)"


def clear_endpoint(database_url: str) -> tuple[str, str]:
    """A tenant and an endpoint with a secret in clear, as before 0008; (endpoint id, secret)."""
    secret = "whsec_" + "A" * 43 + "="
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as conn:
            tenant = conn.execute(
                text("INSERT INTO tenants (name) VALUES ('before-0008') RETURNING id")
            ).scalar_one()
            endpoint = conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (tenant_id, url, event_types, secret)"
                    " VALUES (:tenant, 'http://127.0.0.1:9/h', ARRAY['transaction.applied'],"
                    " :secret) RETURNING id"
                ),
                {"tenant": tenant, "secret": secret},
            ).scalar_one()
    finally:
        engine.dispose()
    return str(endpoint), secret


def endpoint_columns(database_url: str, endpoint_id: str) -> dict:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            )
            return dict(row.mappings().one())
    finally:
        engine.dispose()


def test_0008_seals_existing_secrets_and_its_downgrade_opens_them(empty_database):
    upgrade(empty_database, "0006")
    endpoint_id, secret = clear_endpoint(empty_database)

    upgrade(empty_database, "0008_webhook_secrets_sealed")

    sealed = endpoint_columns(empty_database, endpoint_id)
    assert "secret" not in sealed
    assert secret not in str(sealed)
    assert secret_box().open(sealed["secret_sealed"]) == secret

    command.downgrade(alembic_config(empty_database), "0007_money_128")

    assert endpoint_columns(empty_database, endpoint_id)["secret"] == secret


def test_0008_refuses_to_run_without_a_key_when_there_are_secrets_to_seal(
    empty_database, monkeypatch
):
    upgrade(empty_database, "0006")
    endpoint_id, secret = clear_endpoint(empty_database)
    monkeypatch.delenv("TALLY_WEBHOOK_SECRET_KEYS")

    with pytest.raises(RuntimeError, match="TALLY_WEBHOOK_SECRET_KEYS is not set"):
        upgrade(empty_database, "0008_webhook_secrets_sealed")

    assert endpoint_columns(empty_database, endpoint_id)["secret"] == secret


def test_0009_lets_the_api_and_monitor_roles_log_in_and_its_downgrade_keeps_the_login(
    empty_database,
):
    upgrade(empty_database)

    for role in ("tally_api", "tally_monitor"):
        engine = create_engine(sqlalchemy_url(login_as(empty_database, role)))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar_one() == role
        finally:
            engine.dispose()
    assert set(connect_grants(empty_database)) >= {"tally_api", "tally_monitor"}

    command.downgrade(alembic_config(empty_database), "0008_webhook_secrets_sealed")

    assert not {"tally_api", "tally_monitor"} & set(connect_grants(empty_database))
    # Roles are the cluster's: other databases may rely on their login.
    assert roles_that_can_log_in(empty_database) >= {"tally_api", "tally_monitor"}


def connect_grants(database_url: str) -> list[str]:
    """The roles granted CONNECT on the database by name (PUBLIC's default aside)."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT a.grantee::regrole::text FROM pg_database d,"
                        " aclexplode(d.datacl) a"
                        " WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT'"
                        " AND a.grantee <> 0"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def roles_that_can_log_in(database_url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return set(
                conn.execute(text("SELECT rolname FROM pg_roles WHERE rolcanlogin")).scalars()
            )
    finally:
        engine.dispose()
