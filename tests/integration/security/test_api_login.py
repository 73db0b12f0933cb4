"""The API refuses to start on a database login that could undo row-level security."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from api.app import create_app
from config.database_urls import login_as
from config.settings import Settings
from ledger.db import LoginRefused, guard_api_login, make_engine, refuse_unsafe_logins
from tally.migrate import set_login_passwords
from tests.conftest import WEBHOOK_SECRET_KEYS


def api_settings(database_url: str, redis_url: str, api_database_url: str) -> Settings:
    return Settings(
        webhook_secret_keys=WEBHOOK_SECRET_KEYS,
        database_url=database_url,
        api_database_url=api_database_url,
        broker_url=redis_url,
        queue=f"tally-test-login-{uuid.uuid4().hex[:10]}",
    )


def check(url: str) -> None:
    login = make_engine(url, pool_size=1, max_overflow=0)
    try:
        guard_api_login(login)
    finally:
        login.dispose()


def test_the_owners_login_is_refused(database_url: str, redis_url: str, engine: Engine):
    with engine.connect() as conn:
        owner = conn.execute(
            text("SELECT tableowner FROM pg_tables WHERE tablename = 'transactions'")
        ).scalar_one()

    with pytest.raises(LoginRefused, match=f"logs in as {owner}"):
        create_app(api_settings(database_url, redis_url, login_as(database_url, owner)))


def test_a_superuser_login_is_refused(database_url: str, engine: Engine):
    with engine.connect() as conn:
        superuser = conn.execute(
            text("SELECT rolname FROM pg_roles WHERE rolsuper AND rolcanlogin LIMIT 1")
        ).scalar_one()

    with pytest.raises(LoginRefused, match="superuser"):
        check(login_as(database_url, superuser))


@pytest.fixture
def member_of_the_owner(database_url: str, engine: Engine) -> Iterator[str]:
    """A login role that acts as tally_api but may also SET ROLE to the tables' owner."""
    name = f"tally_test_login_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        owner = conn.execute(
            text("SELECT tableowner FROM pg_tables WHERE tablename = 'transactions'")
        ).scalar_one()
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
        conn.execute(text(f"GRANT tally_api TO {name}"))
        conn.execute(text(f'GRANT "{owner}" TO {name}'))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP ROLE {name}"))


def test_a_login_that_can_set_role_to_the_owner_is_refused(database_url, member_of_the_owner):
    with pytest.raises(LoginRefused, match="can SET ROLE to"):
        check(login_as(database_url, member_of_the_owner))


def test_the_api_roles_own_login_is_accepted(database_url: str):
    check(Settings(database_url=database_url).require_api_database_url())


def test_every_connection_is_checked_even_when_the_database_was_away_at_start(
    database_url: str, engine: Engine
):
    """An app that started before the database could not check its login then: the first
    connection it opens later is refused all the same."""
    owners_login = make_engine(database_url, pool_size=1, max_overflow=0)
    refuse_unsafe_logins(owners_login)
    try:
        with pytest.raises(LoginRefused, match=r"superuser|owner"), owners_login.connect():
            pass
    finally:
        owners_login.dispose()


@pytest.fixture
def throwaway_login(engine: Engine) -> Iterator[str]:
    """A login role of this test's own: the shared roles' passwords are the cluster's."""
    name = f"tally_test_password_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP ROLE {name}"))


def test_migrate_sets_the_passwords_it_is_given_and_leaves_the_others(
    database_url: str, engine: Engine, throwaway_login: str
):
    untouched = f"{throwaway_login}_absent"

    changed = set_login_passwords(database_url, {throwaway_login: "it's:a%secret", untouched: None})

    assert changed == [throwaway_login]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT rolpassword FROM pg_authid WHERE rolname = :name"),
            {"name": throwaway_login},
        ).scalar_one()
    assert stored is not None and stored.startswith(("SCRAM-SHA-256$", "md5"))
