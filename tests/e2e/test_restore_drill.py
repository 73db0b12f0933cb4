"""The restore drill: a base backup taken under load recovers, with its archived WAL, into
a new server at a named point in time, and the ledger carries on there
(docs/operations.md#backups-and-restore).

The procedure is docs/operations.md#backups-and-restore, with PostgreSQL's own
tools, against a private primary that archives its WAL as compose's does:

1. top-ups are applied, then the worker stops: from here on, submissions stay `queued`;
2. while submissions keep coming, `pg_basebackup` copies the primary and
   `pg_verifybackup` checks the copy;
3. submissions go on past the end of the backup; `pg_create_restore_point` marks the
   recovery target; more submissions follow it; the WAL segment holding the mark is
   archived;
4. the backup is copied into a new data directory and recovered from the archive up to
   the mark (`recovery_target_name`), then promoted.

The restored database holds every submission answered before the mark, none sent after
it, and passes `tally verify`. A new API, worker and relay on it (and a queue of their
own: nothing of the old stack's broker messages reaches them) apply every transaction
that was still queued: the relay finds them in PostgreSQL. Replaying their
`reference_id`s answers the same transactions and moves no money.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from config.database_urls import sqlalchemy_url
from ledger.db import make_engine
from tally.migrate import upgrade
from tally.stack import create_database, with_database
from tests.conftest import backend_missing, make_tenant
from tests.support.postgres_cluster import Cluster, PostgresTools, initdb, running
from tests.support.stack import (
    ApiClient,
    Stack,
    stack_env,
    status_counts,
    submit_concurrently,
    wait_until,
)

WALLETS = 20
FUNDING = 1_000
TOPUP, SPEND = 100, 150
LOAD_THREADS = 3
RESTORE_POINT = "tally-restore-drill"
ARCHIVE = "wal-archive"


# --- the backup procedure, step by step -----------------------------------------------------


def archive_wal(primary: Cluster, archive: Path) -> None:
    """Once, on the primary (takes a restart): copy every finished WAL segment to the archive."""
    primary.configure(
        wal_level="replica",
        archive_mode="on",
        # Never overwrite a segment already archived: PostgreSQL's documented form.
        archive_command=f"test ! -f {archive}/%f && cp %p {archive}/%f",
    )


def take_base_backup(primary: Cluster, backup: Path) -> None:
    """A base backup of the running primary, with the WAL needed to make it consistent."""
    primary.tools.run(
        "pg_basebackup",
        f"--dbname=postgresql://postgres@127.0.0.1:{primary.port}/postgres",
        f"--pgdata={backup}",
        "--wal-method=stream",
        # Start now instead of waiting for the next scheduled checkpoint.
        "--checkpoint=fast",
        f"--label={RESTORE_POINT}",
    )
    primary.tools.run("pg_verifybackup", str(backup))


def mark_restore_point(primary: Cluster, archive: Path) -> None:
    """Name this moment in the WAL and wait until the segment holding the name is archived."""
    with admin_engine(primary.server_url) as admin, admin.connect() as conn:
        conn.execute(text("SELECT pg_create_restore_point(:name)"), {"name": RESTORE_POINT})
        # Close the segment now rather than when it fills: only closed segments are archived.
        segment = conn.execute(text("SELECT pg_walfile_name(pg_switch_wal())")).scalar_one()
    wait_until(lambda: (archive / segment).exists(), 30, f"WAL segment {segment} to be archived")


@contextlib.contextmanager
def restored_server(tools: PostgresTools, backup: Path, archive: Path) -> Iterator[Cluster]:
    """A new server recovered from the base backup and the archive up to the restore point."""
    cluster = Cluster(tools, "restored", tools.root / "restored")
    tools.run("cp", "-a", str(backup), str(cluster.data_dir))
    cluster.configure(
        restore_command=f"cp {archive}/%f %p",
        recovery_target_name=RESTORE_POINT,
        recovery_target_action="promote",
        # A restored server starts a new timeline: it must not write into the old archive.
        archive_mode="off",
    )
    tools.run("touch", str(cluster.data_dir / "recovery.signal"))
    with running(cluster):
        with admin_engine(cluster.server_url) as admin:
            wait_until(lambda: not in_recovery(admin), 60, "the restored server to be promoted")
        yield cluster


# --- helpers --------------------------------------------------------------------------------


@contextlib.contextmanager
def admin_engine(server_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def in_recovery(admin: Engine) -> bool:
    with admin.connect() as conn:
        return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one())


def tally_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    """`tally verify` as an operator runs it: the CLI, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", "verify"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def running_stack(database_url: str, broker_url: str, log_dir: Path) -> Iterator[Stack]:
    """API, worker and relay on the database, on a broker queue of their own."""
    env = stack_env(database_url, broker_url)
    log_dir.mkdir()
    stack = Stack(database_url, broker_url, log_dir, env)
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        drop_queue(broker_url, env["TALLY_QUEUE"])


def drop_queue(broker_url: str, queue: str) -> None:
    """Delete the stack's queue: the primary's holds messages no worker will ever take."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        # Redis's virtual transport deletes only queues this connection bound: purge first.
        channel.queue_purge(queue)
        channel.queue_delete(queue)


def call(i: int, prefix: str) -> tuple[str, dict[str, Any]]:
    """The i-th submission: top-ups and spends alternating over WALLETS wallets."""
    path, amount = ("/wallets/topup", TOPUP) if i % 2 == 0 else ("/wallets/spend", SPEND)
    body = {
        "user_id": f"w{(i // 2) % WALLETS}",
        "asset_code": "EUR",
        "amount": amount,
        "reference_id": f"{prefix}-{i}",
    }
    return path, body


@dataclass(frozen=True)
class Submission:
    path: str
    body: dict[str, Any]
    sent: float
    answered: float
    status: int
    transaction_id: str | None


class Load:
    """Submissions from a few threads, each waiting for its answer before the next, until
    stopped; every one recorded with when it was sent and when it was answered."""

    def __init__(self, base_url: str, api_key: str, threads: int = LOAD_THREADS) -> None:
        self.base_url, self.api_key = base_url, api_key
        self.prefix = f"drill-{uuid.uuid4().hex[:8]}"
        self.submissions: list[Submission] = []
        self.errors: list[BaseException] = []
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads), "load did not stop"

    def _run(self) -> None:
        client = ApiClient(self.base_url, self.api_key)
        while not self._stop.is_set():
            with self._lock:
                path, body = call(next(self._numbers), self.prefix)
            sent = time.monotonic()
            try:
                response = client.post(path, body)
                answered = time.monotonic()
                accepted = response.status_code == 202
                submission = Submission(
                    path,
                    body,
                    sent,
                    answered,
                    response.status_code,
                    response.json()["id"] if accepted else None,
                )
            except Exception as error:  # reported by the test
                self.errors.append(error)
                return
            with self._lock:
                self.submissions.append(submission)

    def answered_after(self, moment: float) -> int:
        """How many submissions were answered after `moment`; raises what stopped a thread."""
        if self.errors:
            raise self.errors[0]
        with self._lock:
            return sum(1 for s in self.submissions if s.answered > moment)


def transactions_of(engine: Engine, tenant_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    """reference_id -> (transaction id, status) of every transaction of the tenant."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT reference_id, id::text, status FROM transactions WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).all()
    return {reference: (txn, status) for reference, txn, status in rows}


def ledger_state(engine: Engine, tenant_id: uuid.UUID) -> dict[str, Any]:
    """Wallet balances, and how many transactions and entries the tenant has."""
    with engine.connect() as conn:
        balances: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT owner, balance FROM accounts"
                    " WHERE tenant_id = :t AND NOT is_system AND asset_code = 'EUR'"
                ),
                {"t": tenant_id},
            ).all()
        )
        expected: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT user_id, sum(CASE type WHEN 'topup' THEN amount ELSE -amount END)"
                    " FROM transactions WHERE tenant_id = :t AND status = 'applied'"
                    " GROUP BY user_id"
                ),
                {"t": tenant_id},
            ).all()
        )
        transactions, entries = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM transactions WHERE tenant_id = :t),"
                " (SELECT count(*) FROM entries WHERE tenant_id = :t)"
            ),
            {"t": tenant_id},
        ).one()
    return {
        "balances": balances,
        "expected_balances": expected,
        "transactions": transactions,
        "entries": entries,
    }


# --- the drill ------------------------------------------------------------------------------


@pytest.fixture
def tools() -> Iterator[PostgresTools]:
    try:
        tools = PostgresTools()
    except ImportError:
        backend_missing("pgserver is not installed: no PostgreSQL binaries for a private server")
    yield tools
    tools.cleanup()


@pytest.mark.slow
def test_a_backup_taken_under_load_restores_and_strands_nothing(
    tools: PostgresTools, redis_url: str, tmp_path: Path
) -> None:
    archive = tools.folder(ARCHIVE)
    primary = initdb(tools, "primary")
    archive_wal(primary, archive)
    backup = tools.root / "base-backup"

    with running(primary):
        database_url = create_database(primary.server_url, "tally")
        upgrade(database_url)
        primary_engine = make_engine(database_url)
        try:
            tenant = make_tenant(primary_engine, "drill")
            with running_stack(database_url, redis_url, tmp_path / "primary-logs") as stack:
                # 1. Money in every wallet, applied; then no worker: what comes next queues.
                funding = [
                    ("/wallets/topup", {**call(2 * w, "fund")[1], "amount": FUNDING})
                    for w in range(WALLETS)
                ]
                responses = submit_concurrently(stack.base_url, tenant.api_key, funding)
                assert [r.status_code for r in responses] == [202] * WALLETS
                wait_until(
                    lambda: status_counts(primary_engine, tenant.id)["applied"] == WALLETS,
                    60,
                    "the funding top-ups to be applied",
                )
                (worker,) = stack.workers
                stack.kill_worker(worker, sig=signal.SIGTERM)

                with Load(stack.base_url, tenant.api_key) as load:
                    wait_until(
                        lambda: status_counts(primary_engine, tenant.id)["queued"] >= 30,
                        60,
                        "submissions to queue up",
                    )
                    # 2. The base backup, submissions arriving throughout.
                    queued_at_backup = {
                        txn
                        for txn, status in transactions_of(primary_engine, tenant.id).values()
                        if status == "queued"
                    }
                    take_base_backup(primary, backup)
                    # 3. More past the backup's end; the mark; more past the mark.
                    backed_up = time.monotonic()
                    wait_until(
                        lambda: load.answered_after(backed_up) >= 30,
                        60,
                        "submissions after the base backup",
                    )
                    before_mark = time.monotonic()
                    mark_restore_point(primary, archive)
                    after_mark = time.monotonic()
                    wait_until(
                        lambda: load.answered_after(after_mark) >= 30,
                        60,
                        "submissions after the restore point",
                    )
        finally:
            primary_engine.dispose()

    assert not load.errors, load.errors
    assert {s.status for s in load.submissions} == {202}
    submitted = {s.body["reference_id"]: s for s in load.submissions}
    answered_before_mark = {r for r, s in submitted.items() if s.answered < before_mark}
    sent_after_mark = {r for r, s in submitted.items() if s.sent > after_mark}
    answered_after_backup = {r for r in answered_before_mark if submitted[r].sent > backed_up}
    assert answered_after_backup, "no submission fell between the backup and the mark"

    # 4. A new server, recovered to the mark.
    with restored_server(tools, backup, archive) as restored:
        restored_url = with_database(restored.server_url, make_url(database_url).database or "")
        engine = make_engine(restored_url)
        try:
            restored_transactions = transactions_of(engine, tenant.id)
            # Everything answered before the mark is there, the base backup alone would not
            # have held all of it, and nothing sent after the mark is.
            assert answered_before_mark <= set(restored_transactions)
            assert not sent_after_mark & set(restored_transactions)
            for reference in answered_before_mark:
                assert restored_transactions[reference][0] == submitted[reference].transaction_id
            stranded = {
                reference: txn
                for reference, (txn, status) in restored_transactions.items()
                if status == "queued"
            }
            assert queued_at_backup <= set(stranded.values())
            assert len(stranded) >= 30

            verified = tally_verify(restored_url)
            assert verified.returncode == 0, verified.stdout + verified.stderr

            with running_stack(restored_url, redis_url, tmp_path / "restored-logs") as stack:
                wait_until(
                    lambda: status_counts(engine, tenant.id)["queued"] == 0,
                    90,
                    f"the {len(stranded)} transactions queued at the restore point to be applied",
                )
                after_restore = transactions_of(engine, tenant.id)
                outcomes = {after_restore[reference][1] for reference in stranded}
                assert outcomes <= {"applied", "rejected"}, outcomes
                assert all(
                    after_restore[reference][1] == "applied"
                    for reference in stranded
                    if submitted[reference].path == "/wallets/topup"
                )
                settled = ledger_state(engine, tenant.id)
                assert settled["balances"] == settled["expected_balances"]

                replays = submit_concurrently(
                    stack.base_url,
                    tenant.api_key,
                    [(submitted[r].path, submitted[r].body) for r in stranded],
                    threads=16,
                )
                for reference, replay in zip(stranded, replays, strict=True):
                    assert replay.status_code == 200, replay.text
                    assert replay.headers.get("Idempotent-Replayed") == "true"
                    assert replay.json()["id"] == stranded[reference]
                    assert replay.json()["status"] == after_restore[reference][1]
                assert ledger_state(engine, tenant.id) == settled
        finally:
            engine.dispose()

        verified = tally_verify(restored_url)
        assert verified.returncode == 0, verified.stdout + verified.stderr
