"""`tally bench`: the real stack driven over HTTP, next to the raw ledger write (DESIGN §8).

One run creates a fresh database on a PostgreSQL server (given, or embedded), starts the
API under gunicorn and a Celery worker on the chosen broker as subprocesses, funds
wallets, then drives HTTP submissions from a pool of client processes: closed loop (a
fixed number of requests in flight) or open loop (`--rate`, requests offered on a fixed
schedule). Rates and apply latencies are read from the database (`created_at`,
`completed_at`); accept latencies are measured by the clients. The same ledger write, one
commit per transfer, then runs directly in SQL on the same database, and the ledger's
invariants are checked at the end: any violation, error or stranded transaction makes
the exit status non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config.database_urls import sqlalchemy_url
from config.settings import Settings
from tally.processes import stop_process_groups

ASSET = "BENCH"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
# Each wallet starts rich enough that no bench transaction is rejected for funds.
FUNDING = 10**12
MAX_AMOUNT = 100
REQUEST_ATTEMPTS = 3
PATTERNS = ("uniform", "hot")


class BenchError(RuntimeError):
    """The benchmark could not run."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `tally bench` flags."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TALLY_BENCH_DATABASE_URL"),
        help="PostgreSQL server to create the fresh bench database on "
        "(default: TALLY_BENCH_DATABASE_URL, else an embedded PostgreSQL)",
    )
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument(
        "--broker-url",
        help="broker URL (default: TALLY_BENCH_REDIS_URL or TALLY_BENCH_AMQP_URL for --broker, "
        "else an embedded Redis; RabbitMQ needs a URL)",
    )
    parser.add_argument("--pattern", choices=[*PATTERNS, "both"], default="both")
    parser.add_argument("--count", type=int, default=20_000, help="transactions per pattern")
    parser.add_argument(
        "--concurrency", type=int, help="requests in flight (default: 32, or 4 with --bulk)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered transactions per second (open loop); 0 sends as fast as the stack answers",
    )
    parser.add_argument("--bulk", action="store_true", help="submit via POST /transactions/batch")
    parser.add_argument("--bulk-size", type=int, default=1000, help="items per batch request")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets per pattern")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--api-threads", type=int, default=16, help="threads per API process")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery pool size")
    parser.add_argument("--worker-pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument(
        "--raw-count", type=int, help="raw SQL transfers per pattern (default: --count)"
    )
    parser.add_argument("--raw-clients", type=int, default=8, help="raw SQL connections")
    parser.add_argument("--skip-raw", action="store_true", help="do not run the raw SQL write")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON here")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database")
    parser.add_argument("--seed", type=int, default=1234)


# --- percentiles and the report -------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of durations given in seconds (nearest rank)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, math.ceil(q * len(ordered)) - 1)
        return round(ordered[index] * 1000, 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


@dataclass
class RunResult:
    pattern: str
    mode: str
    broker: str
    count: int
    concurrency: int
    offered_rate: float | None
    intake_rate: float = 0.0
    applied_rate: float = 0.0
    accept_latency_ms: dict[str, float | None] = field(default_factory=dict)
    apply_latency_ms: dict[str, float | None] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    retries: int = 0
    raw_sql: dict[str, Any] | None = None
    applied_to_raw_ratio: float | None = None
    memory_peak_mb: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per measured transaction, by role, over submission and application.
    cpu_ms_per_tx: dict[str, float] = field(default_factory=dict)


def format_table(runs: Sequence[RunResult]) -> str:
    """The results as a fixed-width table."""
    header = (
        "pattern", "mode", "broker", "count", "intake/s", "applied/s", "raw SQL/s", "ratio",
        "accept p50/p95/p99 ms", "accept->applied p50/p95/p99 ms", "errors",
        "API RSS MB", "worker RSS MB",
    )  # fmt: skip

    def trio(values: dict[str, float | None]) -> str:
        return "/".join("-" if values.get(k) is None else f"{values[k]:.0f}" for k in PCTS)

    rows = [header]
    for run in runs:
        raw_rate = run.raw_sql["rate"] if run.raw_sql else None
        rows.append(
            (
                run.pattern,
                run.mode,
                run.broker,
                str(run.count),
                f"{run.intake_rate:.0f}",
                f"{run.applied_rate:.0f}",
                "-" if raw_rate is None else f"{raw_rate:.0f}",
                "-" if run.applied_to_raw_ratio is None else f"{run.applied_to_raw_ratio:.2f}",
                trio(run.accept_latency_ms),
                trio(run.apply_latency_ms),
                str(run.errors.get("total", 0)),
                f"{run.memory_peak_mb.get('api_worker', 0):.0f}",
                f"{run.memory_peak_mb.get('celery_worker', 0):.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


PCTS = ("p50", "p95", "p99")


# --- HTTP load generation (runs in client processes: stdlib only) ----------------------------


@dataclass(frozen=True)
class ClientJob:
    """One load-generator process's share of a phase."""

    port: int
    api_key: str
    path: str
    bodies: list[bytes]
    items_per_body: int
    threads: int
    start_at: float
    # Seconds between consecutive bodies of this process; 0 = closed loop.
    interval: float


def _send(connection: http.client.HTTPConnection, path: str, body: bytes, headers: Any) -> Any:
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    return response.status, response.read()


def _client_thread(job: ClientJob, indexes: range, out: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {job.api_key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", job.port, timeout=60)
    latencies: list[float] = out["latencies"]
    statuses: Counter[int] = out["statuses"]
    for index in indexes:
        if job.interval:
            delay = job.start_at + index * job.interval - time.time()
            if delay > 0:
                time.sleep(delay)
        body = job.bodies[index]
        started = time.perf_counter()
        sent_at = time.time()
        status, payload = 0, b""
        for attempt in range(REQUEST_ATTEMPTS):
            try:
                status, payload = _send(connection, job.path, body, headers)
                break
            except (OSError, http.client.HTTPException) as error:
                # Same body, same reference ids: a retried submission is an idempotent replay.
                out["retries"] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", job.port, timeout=60)
                if attempt == REQUEST_ATTEMPTS - 1:
                    out["samples"].append(f"{type(error).__name__}: {error}")
        latencies.append(time.perf_counter() - started)
        out["first"] = min(out["first"], sent_at)
        out["last"] = max(out["last"], time.time())
        statuses[status] += 1
        if status not in (200, 202) and len(out["samples"]) < 5:
            out["samples"].append(f"HTTP {status}: {payload[:300]!r}")
        if job.items_per_body > 1 and status == 200:
            result = json.loads(payload)
            out["item_errors"] += result["errors"]
            if result["errors"] and len(out["samples"]) < 5:
                bad = [r for r in result["results"] if r["outcome"] == "error"]
                out["samples"].append(f"batch item error: {bad[0]}")
    connection.close()


def run_client(job: ClientJob) -> dict[str, Any]:
    """Send this job's bodies from `job.threads` threads; latencies and status counts."""
    cpu_at_start = time.process_time()
    outs = []
    threads = []
    delay = job.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    for number in range(job.threads):
        out: dict[str, Any] = {
            "latencies": [],
            "statuses": Counter(),
            "samples": [],
            "retries": 0,
            "item_errors": 0,
            "first": math.inf,
            "last": 0.0,
        }
        outs.append(out)
        indexes = range(number, len(job.bodies), job.threads)
        threads.append(threading.Thread(target=_client_thread, args=(job, indexes, out)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses: Counter[int] = Counter()
    for out in outs:
        statuses.update(out["statuses"])
    return {
        "latencies": [x for out in outs for x in out["latencies"]],
        "statuses": dict(statuses),
        "samples": [s for out in outs for s in out["samples"]][:5],
        "retries": sum(out["retries"] for out in outs),
        "item_errors": sum(out["item_errors"] for out in outs),
        "first": min(out["first"] for out in outs),
        "last": max(out["last"] for out in outs),
        "cpu": time.process_time() - cpu_at_start,
    }


# --- workloads --------------------------------------------------------------------------------


def workload(
    pattern: str, run_id: str, count: int, wallets: int, seed: int
) -> list[dict[str, Any]]:
    """The measured transactions: uniform mixes spends and transfers over all wallets; hot
    sends every transaction into one account (spends from every wallet to @revenue)."""
    rng = random.Random(seed)
    items = []
    for index in range(count):
        user = f"{run_id}-w{rng.randrange(wallets)}"
        item: dict[str, Any] = {
            "asset_code": ASSET,
            "amount": rng.randint(1, MAX_AMOUNT),
            "reference_id": f"{run_id}-{index}",
            "user_id": user,
        }
        if pattern == "uniform" and index % 2:
            target = user
            while target == user:
                target = f"{run_id}-w{rng.randrange(wallets)}"
            item.update(type="transfer", to_user_id=target)
        else:
            item.update(type="spend", item_id="sku-1")
        items.append(item)
    return items


def funding(run_id: str, wallets: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "topup",
            "asset_code": ASSET,
            "amount": FUNDING,
            "reference_id": f"{run_id}-fund-{n}",
            "user_id": f"{run_id}-w{n}",
            "payment_method": "bench",
        }
        for n in range(wallets)
    ]


def bodies_for(items: list[dict[str, Any]], bulk_size: int) -> list[bytes]:
    if bulk_size <= 1:
        return [json.dumps(item).encode() for item in items]
    return [
        json.dumps({"transactions": items[start : start + bulk_size]}).encode()
        for start in range(0, len(items), bulk_size)
    ]


# --- raw SQL ledger write (DESIGN §8), in its own processes ------------------------------------

RAW_LOCK = "SELECT id, balance, version FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
RAW_TRANSACTION = """
    INSERT INTO transactions (id, tenant_id, type, reference_id, request_hash, status,
                              asset_code, amount, user_id, to_user_id, completed_at)
    VALUES (%s, %s, 'transfer', %s, 'raw', 'applied', %s, %s, %s, %s, now())
"""
RAW_ENTRIES = """
    INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                         account_version)
    VALUES (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s)
"""
RAW_BALANCES = """
    UPDATE accounts a SET balance = v.balance, version = v.version, updated_at = now()
    FROM (VALUES (%s::bigint, %s::bigint, %s::bigint), (%s, %s, %s)) AS v(id, balance, version)
    WHERE a.id = v.id
"""


@dataclass(frozen=True)
class RawJob:
    url: str
    tenant_id: str
    run_id: str
    # (index, debit account id, debit owner, credit account id, credit owner, amount)
    transfers: list[tuple[int, int, str, int, str, int]]
    start_at: float


def run_raw(job: RawJob) -> float:
    """Apply the transfers one commit each; the wall-clock time it took.

    Pipelined: after the locking SELECT answers, the writes and the COMMIT go out together,
    so the client's round trips and Python overhead stay small next to the server's work.
    """
    import psycopg

    with psycopg.connect(job.url) as conn:
        delay = job.start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        with conn.pipeline():
            for index, debit, debit_owner, credit, credit_owner, amount in job.transfers:
                with conn.transaction():
                    locked = conn.execute(RAW_LOCK, ([debit, credit],)).fetchall()
                    state = {row[0]: (row[1], row[2]) for row in locked}
                    txn = uuid.uuid4()
                    reference = f"{job.run_id}-{index}"
                    conn.execute(
                        RAW_TRANSACTION,
                        (txn, job.tenant_id, reference, ASSET, amount, debit_owner, credit_owner),
                    )
                    debit_after = (state[debit][0] - amount, state[debit][1] + 1)
                    credit_after = (state[credit][0] + amount, state[credit][1] + 1)
                    conn.execute(
                        RAW_ENTRIES,
                        (
                            *(job.tenant_id, txn, debit, -amount, *debit_after),
                            *(job.tenant_id, txn, credit, amount, *credit_after),
                        ),
                    )
                    conn.execute(RAW_BALANCES, (debit, *debit_after, credit, *credit_after))
        return time.perf_counter() - started


# --- processes and services -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(server_url: str, name: str) -> str:
    """The same server, another database (the URL may carry a socket path in its query)."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@dataclass
class Stack:
    """`tally api` and `tally worker` as subprocesses, each in its own process group."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0

    def spawn(self, role: str, *args: str) -> None:
        log = (self.log_dir / f"{role}.log").open("wb")
        self.processes[role] = subprocess.Popen(
            [sys.executable, "-m", "tally.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.spawn(
            "api",
            "api",
            "--port",
            str(self.port),
            "--workers",
            str(args.api_workers),
            "--threads",
            str(args.api_threads),
        )
        self.spawn(
            "worker",
            "worker",
            "--concurrency",
            str(args.worker_concurrency),
            "--pool",
            args.worker_pool,
            "--loglevel",
            "WARNING",
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise BenchError(f"{role} exited:\n{self.log_tail(role)}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/api/v1/health")
                if connection.getresponse().status == 200:
                    return
            time.sleep(0.2)  # polling a starting server
        raise BenchError(f"API not healthy after {STARTUP_TIMEOUT_SECONDS}s")

    def log_tail(self, role: str) -> str:
        return (self.log_dir / f"{role}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process_groups(self.processes.values(), STOP_TIMEOUT_SECONDS)


class ProcessMonitor:
    """Peak RSS (sampled in a thread) and CPU time of the API and worker processes."""

    def __init__(self, stack: Stack, interval: float = 0.2) -> None:
        self.stack = stack
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.run_peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _roles(self) -> Iterator[tuple[str, Any]]:
        import psutil

        for role, process in self.stack.processes.items():
            try:
                root = psutil.Process(process.pid)
                children = root.children(recursive=True)
            except psutil.Error:
                continue
            if role == "api":
                yield "api_master", root
                for child in children:
                    yield "api_worker", child
            else:
                yield "celery_worker", root
                for child in children:
                    cmdline = " ".join(_safe(child.cmdline))
                    yield ("relay" if "relay" in cmdline else "celery_worker"), child

    def sample(self) -> None:
        import psutil

        for role, process in self._roles():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            with self._lock:
                for peaks in (self.peaks, self.run_peaks):
                    if rss > peaks.get(process.pid, (role, 0))[1]:
                        peaks[process.pid] = (role, rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @staticmethod
    def by_role(peaks: dict[int, tuple[str, int]]) -> dict[str, float]:
        """The largest single process of each role, in MB."""
        out: dict[str, float] = {}
        for role, rss in peaks.values():
            out[role] = max(out.get(role, 0.0), round(rss / 2**20, 1))
        return out

    def cpu_by_process(self, database: str) -> dict[int, tuple[str, float]]:
        """CPU seconds used so far by each of the stack's processes, its PostgreSQL backends
        and the broker (which may serve others too), with the role of each."""
        import psutil

        seconds: dict[int, tuple[str, float]] = {}

        def add(role: str, process: Any) -> None:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds[process.pid] = (role, times.user + times.system)

        for role, process in self._roles():
            add("api" if role.startswith("api") else role, process)
        for process in psutil.process_iter(["name", "cmdline"]):
            name = process.info["name"] or ""
            cmdline = process.info["cmdline"] or []
            if name == "postgres" and f" {database} " in " ".join(cmdline):
                add("postgres", process)
            elif name == "redis-server" or "beam.smp" in name:
                add("broker", process)
        return seconds

    @staticmethod
    def cpu_delta(
        before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
    ) -> dict[str, float]:
        """CPU seconds per role between two snapshots (a process that ended in between is
        not counted: PostgreSQL backends of closed connections are the usual case)."""
        totals: dict[str, float] = {}
        for pid, (role, seconds) in after.items():
            spent = seconds - before.get(pid, (role, 0.0))[1]
            totals[role] = totals.get(role, 0.0) + spent
        return totals

    def take_run_peaks(self) -> dict[str, float]:
        with self._lock:
            peaks, self.run_peaks = self.run_peaks, {}
        return self.by_role(peaks)


def _safe(call: Any) -> list[str]:
    try:
        return list(call())
    except Exception:
        return []


@contextlib.contextmanager
def bench_database(server_url: str | None, work_dir: Path, keep: bool) -> Iterator[str]:
    """A fresh, migrated database on the given server (or an embedded one); dropped after."""
    from sqlalchemy import create_engine, text

    from tally.migrate import upgrade

    embedded = None
    if not server_url:
        from tally.embedded import start_postgres

        embedded, server_url = start_postgres(work_dir / "pgdata")
    name = f"tally_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = _with_database(server_url, name)
        upgrade(url)
        yield url
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if embedded is not None:
            embedded.cleanup()


@contextlib.contextmanager
def bench_broker(args: argparse.Namespace, work_dir: Path) -> Iterator[str]:
    url = args.broker_url or os.environ.get(f"TALLY_BENCH_{args.broker.upper()}_URL")
    if url:
        yield url
        return
    if args.broker == "amqp":
        raise BenchError("--broker amqp needs --broker-url or TALLY_BENCH_AMQP_URL")
    from tally.embedded import start_redis

    server, url = start_redis(work_dir / "redis")
    try:
        yield url
    finally:
        server.shutdown()


def _delete_queue(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(broker_url, connect_timeout=3) as connection:
        channel = connection.default_channel
        # Purge first: Redis's virtual transport deletes only queues this connection bound.
        channel.queue_purge(queue)
        channel.queue_delete(queue)


# --- the benchmark ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, database_url: str, broker_url: str) -> None:
        from ledger.db import make_engine

        self.args = args
        self.database_url = database_url
        self.broker_url = broker_url
        self.engine = make_engine(database_url, pool_size=4)
        self.runs: list[RunResult] = []
        self.tenant_id = ""
        self.api_key = ""

    def seed(self) -> None:
        from ledger.db import unit_of_work
        from ledger.tenants import create_api_key, create_asset, create_tenant

        with unit_of_work(self.engine) as conn:
            tenant_id = create_tenant(conn, "bench")
            self.api_key = create_api_key(conn, tenant_id, is_admin=True)
            create_asset(conn, tenant_id, ASSET, "Bench units", 2)
        self.tenant_id = str(tenant_id)

    def drive(
        self, port: int, items: list[dict[str, Any]], bulk_size: int, concurrency: int, rate: float
    ) -> dict[str, Any]:
        """Submit the items over HTTP from client processes; merged client results."""
        bodies = bodies_for(items, bulk_size)
        clients = max(1, min(self.args.clients, concurrency, len(bodies)))
        per_body = max(1, bulk_size)
        start_at = time.time() + 2.0  # spawned clients import, then all start together
        interval = (per_body * clients / rate) if rate > 0 else 0.0
        jobs = []
        for number in range(clients):
            share = bodies[number::clients]
            threads = max(1, concurrency // clients + (number < concurrency % clients))
            jobs.append(
                ClientJob(
                    port=port,
                    api_key=self.api_key,
                    path="/api/v1/transactions/batch" if bulk_size > 1 else "/api/v1/transactions",
                    bodies=share,
                    items_per_body=per_body,
                    threads=min(threads, len(share)),
                    # Offset each process's schedule so the offered load is evenly spaced.
                    start_at=start_at + (number * per_body / rate if rate > 0 else 0.0),
                    interval=interval,
                )
            )
        context = multiprocessing.get_context("spawn")
        with context.Pool(clients) as pool:
            results = pool.map(run_client, jobs)
        statuses: Counter[int] = Counter()
        for result in results:
            statuses.update({int(k): v for k, v in result["statuses"].items()})
        return {
            "latencies": [x for r in results for x in r["latencies"]],
            "statuses": statuses,
            "samples": [s for r in results for s in r["samples"]][:5],
            "retries": sum(r["retries"] for r in results),
            "item_errors": sum(r["item_errors"] for r in results),
            "first": min(r["first"] for r in results),
            "last": max(r["last"] for r in results),
            "cpu": sum(r["cpu"] for r in results),
        }

    def wait_terminal(self, prefix: str, expected: int, timeout: float) -> int:
        """Wait until every transaction of the phase is final; how many are still queued."""
        from sqlalchemy import text

        query = text(
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FROM transactions"
            " WHERE tenant_id = :t AND reference_id LIKE :p"
        )
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                queued, total = conn.execute(query, {"t": self.tenant_id, "p": prefix + "%"}).one()
            if (queued == 0 and total >= expected) or time.monotonic() > deadline:
                return int(queued) + max(0, expected - int(total))
            time.sleep(0.2)

    def measured_stats(self, run_id: str) -> dict[str, Any]:
        """Statuses, first acceptance, last completion and apply latencies of a phase."""
        from sqlalchemy import text

        # Measured reference ids are "<run_id>-<n>"; the funding top-ups "<run_id>-fund-<n>".
        query = text(
            """
            SELECT status, count(*),
                   extract(epoch FROM min(created_at)), extract(epoch FROM max(completed_at)),
                   array_agg(extract(epoch FROM completed_at - created_at))
                     FILTER (WHERE completed_at IS NOT NULL)
            FROM transactions
            WHERE tenant_id = :t AND reference_id LIKE :p AND reference_id NOT LIKE :f
            GROUP BY status
            """
        )
        statuses: dict[str, int] = {}
        first, last = math.inf, 0.0
        latencies: list[float] = []
        params = {"t": self.tenant_id, "p": f"{run_id}-%", "f": f"{run_id}-fund-%"}
        with self.engine.connect() as conn:
            for status, count, created, completed, lat in conn.execute(query, params):
                statuses[status] = int(count)
                first = min(first, float(created))
                if completed is not None:
                    last = max(last, float(completed))
                    latencies += [float(x) for x in lat]
        return {"statuses": statuses, "first": first, "last": last, "latencies": latencies}

    def fund(self, port: int, run_id: str) -> None:
        items = funding(run_id, self.args.wallets)
        result = self.drive(port, items, bulk_size=1000, concurrency=2, rate=0)
        if set(result["statuses"]) - {200} or result["item_errors"]:
            raise BenchError(f"funding failed: {result['samples']}")
        stranded = self.wait_terminal(f"{run_id}-fund-", len(items), 120)
        if stranded:
            raise BenchError(f"{stranded} funding top-ups were not applied")

    def warm_up(self, port: int, run_id: str, concurrency: int) -> None:
        """Unmeasured single submissions first, so the measured phase sees a steady state
        (pooled database connections, client keep-alives, API threads), not a cold start."""
        count = max(100, min(500, concurrency * 10))
        items = [
            {
                "type": "topup",
                "asset_code": ASSET,
                "amount": 1,
                "reference_id": f"warm-{run_id}-{n}",
                "user_id": f"{run_id}-w{n % self.args.wallets}",
            }
            for n in range(count)
        ]
        self.drive(port, items, 1, concurrency, 0)
        stranded = self.wait_terminal(f"warm-{run_id}-", count, 60)
        if stranded:
            raise BenchError(f"{stranded} warm-up top-ups were not applied")

    def run_pattern(self, pattern: str, port: int, sampler: ProcessMonitor) -> RunResult:
        args = self.args
        mode = "bulk" if args.bulk else "single"
        concurrency = args.concurrency or (4 if args.bulk else 32)
        run_id = f"{pattern}-{mode}-{uuid.uuid4().hex[:6]}"
        self.fund(port, run_id)
        if not args.bulk:
            self.warm_up(port, run_id, concurrency)
        items = workload(pattern, run_id, args.count, args.wallets, args.seed)
        sampler.take_run_peaks()
        from sqlalchemy.engine import make_url

        database = str(make_url(self.database_url).database)
        cpu_before = sampler.cpu_by_process(database)
        print(f"  {pattern}: submitting {len(items)} ({mode}) ...", flush=True)
        client = self.drive(port, items, args.bulk_size if args.bulk else 1, concurrency, args.rate)
        timeout = 60 + args.count / 100
        stranded = self.wait_terminal(f"{run_id}-", args.wallets + args.count, timeout)
        cpu = sampler.cpu_delta(cpu_before, sampler.cpu_by_process(database))
        cpu["clients"] = client["cpu"]
        stats = self.measured_stats(run_id)
        run = RunResult(
            pattern=pattern,
            mode=mode,
            broker=args.broker,
            count=args.count,
            concurrency=concurrency,
            offered_rate=args.rate or None,
        )
        run.memory_peak_mb = sampler.take_run_peaks()
        run.cpu_ms_per_tx = {
            role: round(seconds * 1000 / args.count, 3) for role, seconds in sorted(cpu.items())
        }
        wall = client["last"] - client["first"]
        run.intake_rate = round(args.count / wall, 1) if wall > 0 else 0.0
        span = stats["last"] - stats["first"]
        run.applied_rate = round(args.count / span, 1) if span > 0 else 0.0
        run.accept_latency_ms = percentiles(client["latencies"])
        run.apply_latency_ms = percentiles(stats["latencies"])
        run.statuses = stats["statuses"]
        http_errors = sum(n for code, n in client["statuses"].items() if code not in (200, 202))
        run.errors = {
            "http": http_errors,
            "batch_items": client["item_errors"],
            "failed": stats["statuses"].get("failed", 0),
            "rejected": stats["statuses"].get("rejected", 0),
            "not_terminal": stranded,
        }
        run.errors["total"] = sum(run.errors.values())
        run.error_samples = client["samples"]
        run.retries = client["retries"]
        return run

    def raw(self, pattern: str) -> dict[str, Any]:
        """The DESIGN §8 ledger write straight in SQL, one commit per transfer."""
        from sqlalchemy import text

        from ledger.db import unit_of_work
        from ledger.intake import ensure_wallets
        from ledger.tenants import create_asset, create_tenant

        args = self.args
        count = args.raw_count if args.raw_count is not None else args.count
        run_id = f"raw-{pattern}-{uuid.uuid4().hex[:6]}"
        owners = [f"{run_id}-w{n}" for n in range(args.wallets)]
        with unit_of_work(self.engine) as conn:
            tenant_id = create_tenant(conn, run_id)
            create_asset(conn, tenant_id, ASSET, "Raw bench units", 2)
            ensure_wallets(conn, tenant_id, [(ASSET, owner) for owner in [*owners, "hot"]])
            # Transfers between wallets only: a credit limit stands in for funding.
            conn.execute(
                text("UPDATE accounts SET credit_limit = :limit WHERE tenant_id = :t"),
                {"limit": FUNDING, "t": tenant_id},
            )
            rows = conn.execute(
                text("SELECT owner, id FROM accounts WHERE tenant_id = :t"), {"t": tenant_id}
            )
            ids: dict[str, int] = {owner: account_id for owner, account_id in rows}
        rng = random.Random(args.seed)
        transfers = []
        for index in range(count):
            debit = owners[rng.randrange(len(owners))]
            credit = "hot"
            if pattern == "uniform":
                credit = debit
                while credit == debit:
                    credit = owners[rng.randrange(len(owners))]
            amount = rng.randint(1, MAX_AMOUNT)
            transfers.append((index, ids[debit], debit, ids[credit], credit, amount))
        clients = max(1, min(args.raw_clients, count))
        start_at = time.time() + 2.0
        jobs = [
            RawJob(
                _libpq(self.database_url),
                str(tenant_id),
                run_id,
                transfers[number::clients],
                start_at,
            )
            for number in range(clients)
        ]
        context = multiprocessing.get_context("spawn")
        with context.Pool(clients) as pool:
            started = time.time()
            durations = pool.map(run_raw, jobs)
        elapsed = max(durations) if durations else time.time() - started
        return {
            "count": count,
            "clients": clients,
            "seconds": round(elapsed, 3),
            "rate": round(count / elapsed, 1) if elapsed > 0 else 0.0,
        }

    def verify(self) -> tuple[bool, list[str]]:
        from ledger.verify import verify_ledger

        with self.engine.connect() as conn:
            report = verify_ledger(conn)
        return report.ok, report.lines()


def _environment(engine: Any) -> dict[str, Any]:
    from sqlalchemy import text

    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    return {"cpus": os.cpu_count(), "loadavg": list(os.getloadavg()), "postgres": version}


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; 0 when every transaction is final, error-free and the ledger holds."""
    if args.count < 1 or args.wallets < 2:
        print("tally bench: --count must be >= 1 and --wallets >= 2", file=sys.stderr)
        return 2
    patterns = PATTERNS if args.pattern == "both" else (args.pattern,)
    work_dir = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    report: dict[str, Any] = {"command": ["tally", *sys.argv[1:]], "config": vars(args).copy()}
    report["config"].pop("handler", None)
    try:
        with (
            bench_database(args.database_url, work_dir, args.keep_database) as database_url,
            bench_broker(args, work_dir) as broker_url,
        ):
            ok = _bench(args, patterns, database_url, broker_url, work_dir, report)
    except BenchError as error:
        print(f"tally bench: {error}", file=sys.stderr)
        print(f"tally bench: logs are in {work_dir}", file=sys.stderr)
        return 1
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    if ok:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"tally bench: logs are in {work_dir}", file=sys.stderr)
    return 0 if ok else 1


def _bench(
    args: argparse.Namespace,
    patterns: Sequence[str],
    database_url: str,
    broker_url: str,
    work_dir: Path,
    report: dict[str, Any],
) -> bool:
    queue = f"tally-bench-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        TALLY_QUEUE=queue,
        TALLY_LOG_LEVEL=env.get("TALLY_LOG_LEVEL", "WARNING"),
    )
    bench = Bench(args, database_url, broker_url)
    bench.seed()
    report["environment"] = _environment(bench.engine) | {"broker": args.broker}
    stack = Stack(env, work_dir)
    sampler = ProcessMonitor(stack)
    print(f"tally bench: {args.broker} broker, {', '.join(patterns)}", flush=True)
    try:
        stack.start(args)
        sampler.start()
        for pattern in patterns:
            run = bench.run_pattern(pattern, stack.port, sampler)
            if not args.skip_raw:
                print(f"  {pattern}: raw SQL ledger write ...", flush=True)
                run.raw_sql = bench.raw(pattern)
                if run.raw_sql["rate"]:
                    run.applied_to_raw_ratio = round(run.applied_rate / run.raw_sql["rate"], 3)
            bench.runs.append(run)
    finally:
        sampler.stop()
        stack.stop()
        _delete_queue(broker_url, queue)
    invariants_ok, lines = bench.verify()
    bench.engine.dispose()
    report["environment"]["loadavg_after"] = list(os.getloadavg())
    report["runs"] = [asdict(run) for run in bench.runs]
    report["memory_peak_mb"] = ProcessMonitor.by_role(sampler.peaks)
    report["invariants"] = {"ok": invariants_ok, "report": lines}
    errors = sum(run.errors["total"] for run in bench.runs)
    report["ok"] = invariants_ok and errors == 0
    print()
    print(format_table(bench.runs))
    print()
    print(f"peak RSS per process (MB): {report['memory_peak_mb']}")
    environment = report["environment"]
    print(f"load average before/after: {environment['loadavg']} / {environment['loadavg_after']}")
    for run in bench.runs:
        print(f"CPU ms per transaction, {run.pattern}: {run.cpu_ms_per_tx}")
    for run in bench.runs:
        for sample in run.error_samples:
            print(f"  {run.pattern}: {sample}")
    if not invariants_ok:
        print("LEDGER INVARIANTS VIOLATED:\n" + "\n".join(lines), file=sys.stderr)
    elif errors:
        print(f"tally bench: {errors} errors (see above)", file=sys.stderr)
    else:
        print("ledger invariants hold; no errors")
    return bool(report["ok"])
