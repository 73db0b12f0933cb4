"""The journal's hash chains and seals (docs/design.md#tamper-evidence): written by the
posting batch, recomputed by `tally verify --chain`, which names what was changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text

from ledger import chain_verify
from ledger.chain_verify import verify_chains
from ledger.chains import entry_hash, merkle_root
from ledger.db import unit_of_work
from ledger.posting import post_transactions
from ledger.seals import seal_tenant, seals_page
from tests.integration.ledger.helpers import run, submit
from tests.integration.ledger.test_concurrency import all_at_once
from tests.integration.ledger.test_verify import tally_verify
from worker.relay import seal_once


def entries(conn: Connection, tenant_id: uuid.UUID) -> list[Any]:
    return conn.execute(
        text("SELECT * FROM entries WHERE tenant_id = :t ORDER BY account_id, account_version"),
        {"t": tenant_id},
    ).all()


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
    # A hold moves alice's version without an entry: not a gap the chain reports.
    hold = run(engine, tenant_id, "hold", user_id="alice", amount=50, to_user_id="bob")
    run(engine, tenant_id, "capture", original_transaction_id=uuid.UUID(hold["id"]))
    run(engine, tenant_id, "transfer", user_id="alice", to_user_id="bob", amount=200)


def failures(conn: Connection, tenant_id: uuid.UUID) -> list[str]:
    report = verify_chains(conn, tenant_id)
    return [
        f"{subject}: {detail}" for check in report.checks for subject, detail in check.violations
    ]


def test_each_entry_chains_to_its_accounts_previous_one_across_batches(engine, tenant, monkeypatch):
    populate(engine, tenant.id)
    monkeypatch.setattr(chain_verify, "STREAM_ROWS", 3)  # the check reads several batches

    with engine.connect() as conn:
        rows = entries(conn, tenant.id)
        heads = dict(
            conn.execute(
                text("SELECT id, last_hash FROM accounts WHERE tenant_id = :t"), {"t": tenant.id}
            ).all()
        )
        assert failures(conn, tenant.id) == []
    previous: dict[int, bytes | None] = {}
    for row in rows:
        expected = entry_hash(
            previous.get(row.account_id),
            row.tenant_id,
            row.transaction_id,
            row.account_id,
            int(row.amount),
            int(row.balance_after),
            row.account_version,
            row.effective_at,
        )
        assert bytes(row.hash) == expected
        previous[row.account_id] = expected
    assert {account: bytes(head) for account, head in heads.items() if head} == previous


def test_chains_stay_whole_when_workers_apply_batches_at_once(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10_000)
    run(engine, tenant.id, "topup", user_id="bob", amount=10_000)
    ids = [
        submit(engine, tenant.id, "transfer", user_id=a, to_user_id=b, amount=7).id
        for a, b in [("alice", "bob"), ("bob", "alice"), ("alice", "carol")] * 8
    ]

    all_at_once(lambda _: post_transactions(engine, [], fill_to=4, in_order=True), range(6))
    post_transactions(engine, ids)

    with engine.connect() as conn:
        applied = conn.execute(
            text("SELECT count(*) FROM entries WHERE transaction_id = ANY(:ids)"), {"ids": ids}
        ).scalar_one()
        assert applied == 2 * len(ids)
        assert failures(conn, tenant.id) == []


@contextmanager
def journal_unlocked(conn: Connection) -> Iterator[None]:
    """The immutability trigger off, as the table owner could, inside `conn`'s transaction."""
    conn.execute(text("ALTER TABLE entries DISABLE TRIGGER entries_no_update_or_delete"))
    yield
    conn.execute(text("ALTER TABLE entries ENABLE TRIGGER entries_no_update_or_delete"))


def alice_entries(conn: Connection, tenant_id: uuid.UUID) -> list[Any]:
    return conn.execute(
        text(
            "SELECT e.* FROM entries e JOIN accounts a ON a.id = e.account_id"
            " WHERE a.tenant_id = :t AND a.owner = 'alice' ORDER BY e.account_version"
        ),
        {"t": tenant_id},
    ).all()


def test_an_altered_entry_is_named(engine, tenant):
    populate(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        altered = alice_entries(conn, tenant.id)[1]
        with journal_unlocked(conn):
            conn.execute(
                text("UPDATE entries SET amount = amount - 1 WHERE id = :id"), {"id": altered.id}
            )
        found = failures(conn, tenant.id)
        transaction.rollback()

    assert found == [
        f"entry {altered.id} (account {altered.account_id}, transaction"
        f" {altered.transaction_id}): hash does not recompute: this entry was altered"
    ]


def test_a_deleted_entry_is_named_with_the_missing_version(engine, tenant):
    populate(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        journal = alice_entries(conn, tenant.id)
        deleted, following = journal[1], journal[2]
        with journal_unlocked(conn):
            conn.execute(text("DELETE FROM entries WHERE id = :id"), {"id": deleted.id})
        found = failures(conn, tenant.id)
        transaction.rollback()

    assert len(found) == 1
    assert found[0].startswith(f"entry {following.id} (account {deleted.account_id},")
    assert f"account {deleted.account_id} version {deleted.account_version} missing" in found[0]


def test_a_stripped_hash_breaks_the_chain_at_the_next_entry_and_is_listed(engine, tenant):
    populate(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        journal = alice_entries(conn, tenant.id)
        stripped, following = journal[1], journal[2]
        with journal_unlocked(conn):
            conn.execute(text("UPDATE entries SET hash = NULL WHERE id = :id"), {"id": stripped.id})
        report = verify_chains(conn, tenant.id)
        transaction.rollback()

    broken, unchained = report.checks[0], report.checks[1]
    assert [subject for subject, _ in broken.violations] == [
        f"entry {following.id} (account {following.account_id},"
        f" transaction {following.transaction_id})"
    ]
    assert unchained.warning
    assert [subject for subject, _ in unchained.violations] == [
        f"entry {stripped.id} (account {stripped.account_id},"
        f" transaction {stripped.transaction_id})"
    ]
    assert not report.ok


def test_deleting_an_accounts_last_entry_leaves_its_head_unmatched(engine, tenant):
    populate(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        last = alice_entries(conn, tenant.id)[-1]
        with journal_unlocked(conn):
            conn.execute(text("DELETE FROM entries WHERE id = :id"), {"id": last.id})
        found = failures(conn, tenant.id)
        transaction.rollback()

    assert len(found) == 1
    assert found[0].startswith(f"account {last.account_id}: chain head differs")


def seal(engine: Engine, tenant_id: uuid.UUID) -> Any:
    with unit_of_work(engine) as work:
        return seal_tenant(work.connection, tenant_id)


def test_a_seal_is_the_merkle_root_of_the_accounts_heads_and_recomputes(engine, tenant):
    populate(engine, tenant.id)
    first = seal(engine, tenant.id)
    run(engine, tenant.id, "topup", user_id="carol", amount=5)
    second = seal(engine, tenant.id)

    with engine.connect() as conn:
        heads = conn.execute(
            text(
                "SELECT last_hash FROM accounts WHERE tenant_id = :t AND last_hash IS NOT NULL"
                " ORDER BY id"
            ),
            {"t": tenant.id},
        ).scalars()
        assert second.root == merkle_root(bytes(head) for head in heads)
        assert second.entries_through > first.entries_through
        assert second.account_count == first.account_count + 1
        assert [s.id for s in seals_page(conn, tenant.id, 10)] == [second.id, first.id]
        assert [s.id for s in seals_page(conn, tenant.id, 10, before=second.id)] == [first.id]
        assert failures(conn, tenant.id) == []


def test_the_relay_seals_only_tenants_with_entries_since_their_last_seal(engine, tenant):
    populate(engine, tenant.id)

    assert [s.tenant_id for s in seal_once(engine, tenant.id)] == [tenant.id]
    assert seal_once(engine, tenant.id) == []
    # A hold moves alice's account but writes no entry: nothing new to seal.
    run(engine, tenant.id, "hold", user_id="alice", amount=5, to_user_id="bob")
    assert seal_once(engine, tenant.id) == []
    run(engine, tenant.id, "topup", user_id="alice", amount=5)
    (sealed,) = seal_once(engine, tenant.id)
    with engine.connect() as conn:
        last = conn.execute(
            text("SELECT max(id) FROM entries WHERE tenant_id = :t"), {"t": tenant.id}
        ).scalar_one()
    assert sealed.entries_through == last


def test_a_tampered_seal_or_head_is_reported(engine, tenant):
    populate(engine, tenant.id)
    sealed = seal(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(text("ALTER TABLE seals DISABLE TRIGGER seals_append_only"))
        conn.execute(
            text("UPDATE seals SET root = :root WHERE id = :id"),
            {"root": b"\x00" * 32, "id": sealed.id},
        )
        conn.execute(text("ALTER TABLE seals ENABLE TRIGGER seals_append_only"))
        account = conn.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND owner = 'bob'"),
            {"t": tenant.id},
        ).scalar_one()
        conn.execute(
            text("UPDATE accounts SET last_hash = :h WHERE id = :id"),
            {"h": b"\x01" * 32, "id": account},
        )
        found = failures(conn, tenant.id)
        transaction.rollback()

    assert len(found) == 2
    assert found[0].startswith(f"account {account}: chain head differs")
    assert found[1] == (
        f"seal {sealed.id} (tenant {tenant.id}, entries through {sealed.entries_through}):"
        f" root {'00' * 32} recomputes as {sealed.root.hex()}"
    )


def test_seals_are_append_only(engine, tenant):
    populate(engine, tenant.id)
    sealed = seal(engine, tenant.id)

    with engine.connect() as conn, conn.begin() as transaction:
        try:
            conn.execute(text("DELETE FROM seals WHERE id = :id"), {"id": sealed.id})
        except Exception as error:
            assert "append-only" in str(error)
        else:
            raise AssertionError("a seal was deleted")
        transaction.rollback()


def test_tally_seal_prints_the_seals_it_takes(engine, tenant, database_url):
    populate(engine, tenant.id)
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "tally.cli", "seal", "--tenant", str(tenant.id)]

    taken = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    (seal,) = [json.loads(line) for line in taken.stdout.splitlines()]
    assert seal["tenant_id"] == str(tenant.id) and len(seal["root"]) == 64
    assert again.stdout == ""


def test_tally_verify_chain_exits_non_zero_naming_the_altered_entry(engine, tenant, database_url):
    populate(engine, tenant.id)
    with engine.connect() as conn:
        altered = alice_entries(conn, tenant.id)[0]

    assert tally_verify(database_url, "--chain", "--tenant", str(tenant.id)).returncode == 0
    with engine.begin() as conn, journal_unlocked(conn):
        conn.execute(
            text("UPDATE entries SET hash = :h WHERE id = :id"), {"h": b"x", "id": altered.id}
        )
    try:
        result = tally_verify(database_url, "--chain", "--tenant", str(tenant.id))
    finally:
        with engine.begin() as conn, journal_unlocked(conn):
            conn.execute(
                text("UPDATE entries SET hash = :h WHERE id = :id"),
                {"h": altered.hash, "id": altered.id},
            )

    assert result.returncode == 1
    assert f"entry {altered.id} (account {altered.account_id}" in result.stdout
