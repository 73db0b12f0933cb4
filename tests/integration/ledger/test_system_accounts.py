"""System accounts in the ledger: the names it accepts, which names a tenant knows, and
definitions racing asset registrations."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from ledger.assets import create_asset
from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.errors import InvalidRequest, SystemAccountExists
from ledger.system_accounts import define_system_account, known_system_accounts
from tests.conftest import TenantFixture, make_tenant


def define(engine: Engine, tenant_id: uuid.UUID, name: Any, description: Any = None) -> dict:
    with unit_of_work(engine) as work:
        return define_system_account(work, tenant_id, name, description, actor=OPERATOR)


def known(engine: Engine, tenant_id: uuid.UUID, names: list[str]) -> set[str]:
    with engine.connect() as conn:
        return known_system_accounts(conn, tenant_id, names)


@pytest.mark.parametrize("name", ["@", "@Fees", "fees", "@" + "a" * 33, "@a-b", "@a\x00", None])
def test_a_malformed_name_is_invalid_system_account_name(engine, tenant: TenantFixture, name):
    with pytest.raises(InvalidRequest) as refused:
        define(engine, tenant.id, name)

    assert (refused.value.code, refused.value.field) == ("invalid_system_account_name", "name")


@pytest.mark.parametrize("description", ["x" * 501, "a\x00b", 5])
def test_a_bad_description_is_invalid_description(engine, tenant: TenantFixture, description):
    with pytest.raises(InvalidRequest) as refused:
        define(engine, tenant.id, "@fees", description)

    assert (refused.value.code, refused.value.field) == ("invalid_description", "description")
    assert known(engine, tenant.id, ["@fees"]) == set()


def test_the_longest_name_and_description_are_accepted(engine, tenant: TenantFixture):
    name = "@" + "z" * 32

    defined = define(engine, tenant.id, name, "d" * 500)

    assert (defined["name"], len(defined["description"])) == (name, 500)
    with pytest.raises(SystemAccountExists):
        define(engine, tenant.id, name)


def test_known_names_are_the_built_ins_and_the_tenants_own(engine, tenant: TenantFixture):
    define(engine, tenant.id, "@fees")
    other = make_tenant(engine, "other")
    define(engine, other.id, "@tips")

    found = known(engine, tenant.id, ["@topup", "@payouts", "@fees", "@tips", "@nope", "x\x00"])

    assert found == {"@topup", "@payouts", "@fees"}
    assert known(engine, other.id, ["@fees", "@tips"]) == {"@tips"}


def test_a_definition_waits_for_an_asset_registration_in_flight(engine, tenant: TenantFixture):
    """While an asset registration is uncommitted, a definition cannot read past it (and
    miss the new asset): it waits for the tenant's lock."""
    with unit_of_work(engine) as registering:
        create_asset(registering, tenant.id, "GOLD", "Gold", 0)
        with pytest.raises(OperationalError, match="lock timeout"), unit_of_work(engine) as work:
            work.connection.execute(text("SET LOCAL lock_timeout = '50ms'"))
            define_system_account(work, tenant.id, "@fees", None, actor=OPERATOR)

    define(engine, tenant.id, "@fees")

    assert _pairs(engine, tenant.id, "@fees") == {("EUR", "@fees"), ("GOLD", "@fees")}


def test_definitions_and_registrations_at_once_leave_no_pair_without_its_account(
    engine, tenant: TenantFixture
):
    names = [f"@fee_{n}" for n in range(8)]
    codes = [f"COIN{n}" for n in range(8)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def in_thread(work: Any) -> None:
        try:
            start.wait()
            work()
        except BaseException as error:
            failures.append(error)

    def define_all() -> None:
        for name in names:
            define(engine, tenant.id, name)

    def register_all() -> None:
        for code in codes:
            with unit_of_work(engine) as work:
                create_asset(work, tenant.id, code, code, 0)

    threads = [
        threading.Thread(target=in_thread, args=(job,)) for job in (define_all, register_all)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    expected = {(code, name) for code in ["EUR", *codes] for name in names}
    assert _pairs(engine, tenant.id, "@fee_%") == expected


def _pairs(engine: Engine, tenant_id: uuid.UUID, owner_like: str) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT asset_code, owner FROM accounts"
                " WHERE tenant_id = :t AND is_system AND owner LIKE :o"
            ),
            {"t": tenant_id, "o": owner_like},
        ).all()
    return {(code, owner) for code, owner in rows}
