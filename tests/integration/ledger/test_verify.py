"""`tally verify` checks the invariants (docs/design.md#invariants) on a live database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

from ledger.verify import verify_ledger
from tests.integration.ledger.helpers import run


def tally_verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wallet_id(engine: Engine, tenant_id: uuid.UUID, owner: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND owner = :o"),
            {"t": tenant_id, "o": owner},
        ).scalar_one()


@contextmanager
def corrupted_balance(engine: Engine, account_id: int) -> Iterator[None]:
    """A stored balance one unit off its journal, behind the engine's back; restored after."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET balance = balance + 1 WHERE id = :id"), {"id": account_id}
        )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE accounts SET balance = balance - 1 WHERE id = :id"),
                {"id": account_id},
            )


def populate(engine: Engine, tenant_id: uuid.UUID) -> None:
    run(engine, tenant_id, "topup", user_id="alice", amount=1000)
    spend = run(engine, tenant_id, "spend", user_id="alice", amount=300)
    run(
        engine,
        tenant_id,
        "refund",
        user_id="alice",
        amount=100,
        original_transaction_id=uuid.UUID(spend["id"]),
    )
    run(engine, tenant_id, "transfer", user_id="alice", to_user_id="bob", amount=200)
    run(engine, tenant_id, "spend", user_id="bob", amount=201)  # rejected


def test_tally_verify_passes_on_a_healthy_ledger(engine, tenant, database_url):
    populate(engine, tenant.id)

    result = tally_verify(database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger is consistent" in result.stdout
    assert "FAIL" not in result.stdout


def test_tally_verify_fails_naming_an_account_whose_balance_was_tampered_with(
    engine, tenant, database_url
):
    populate(engine, tenant.id)
    alice = wallet_id(engine, tenant.id, "alice")

    with corrupted_balance(engine, alice):
        result = tally_verify(database_url)
        scoped = tally_verify(database_url, "--tenant", str(tenant.id))

    for outcome in (result, scoped):
        assert outcome.returncode == 1, outcome.stdout + outcome.stderr
        assert "LEDGER INVARIANTS VIOLATED" in outcome.stdout
        assert f"account {alice} (alice EUR): stored 601, entries sum to 600" in outcome.stdout
        assert "FAIL balances of each tenant and asset sum to zero" in outcome.stdout
    assert tally_verify(database_url).returncode == 0


def test_tally_verify_without_a_database_url_says_so():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "tally.cli", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_verify_ledger_reports_every_check_ok_on_a_healthy_tenant(engine, tenant):
    populate(engine, tenant.id)

    with engine.connect() as conn:
        report = verify_ledger(conn, tenant.id)

    assert report.ok
    assert len(report.checks) >= 10
    assert all(line.startswith("ok") for line in report.lines())


def test_verify_ledger_names_the_tampered_account_and_only_in_its_tenant(engine, tenant):
    populate(engine, tenant.id)
    bob = wallet_id(engine, tenant.id, "bob")

    with corrupted_balance(engine, bob), engine.connect() as conn:
        mine = verify_ledger(conn, tenant.id)
        elsewhere = verify_ledger(conn, uuid.uuid4())

    failing = {check.name: check.violations for check in mine.checks if not check.ok}
    assert set(failing) == {
        "stored balances equal the sum of their entries",
        "each account's last entry shows its stored balance",
        "balances of each tenant and asset sum to zero",
    }
    assert failing["stored balances equal the sum of their entries"] == [
        (f"account {bob} (bob EUR)", "stored 201, entries sum to 200")
    ]
    assert failing["balances of each tenant and asset sum to zero"] == [
        (f"{tenant.id} EUR", "balances sum to 1")
    ]
    assert not mine.ok
    assert elsewhere.ok


def test_verify_ledger_catches_a_transaction_applied_without_its_entries(engine, tenant):
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=1)  # rejected: no wallet
    with engine.connect() as conn:
        conn.execute(
            text("UPDATE transactions SET status = 'applied', result_code = NULL WHERE id = :id"),
            {"id": spend["id"]},
        )
        report = verify_ledger(conn, tenant.id)
        conn.rollback()

    failing = {check.name: check.violations for check in report.checks if not check.ok}
    assert failing == {
        "applied transactions have their entries (two, one more per leg, four for an"
        " exchange, two per posting; holds and voids none), others none": [
            (spend["id"], "applied with 0 entries")
        ]
    }
