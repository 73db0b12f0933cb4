"""The chaos run from start to verdict: its own PostgreSQL and broker, the stack, the
merchant's endpoint, the funded wallets, then load and faults together, and the checks."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ledger.db import make_engine
from ledger.vocabulary import Scope
from tally.bench.chaos.backends import Broker, OwnPostgres, chaos_broker
from tally.bench.chaos.faults import Fault, Targets, inject, schedule
from tally.bench.chaos.traffic import CLIENT_TIMEOUT_SECONDS, MerchantLoad, funding_items
from tally.bench.chaos.verdict import (
    WEBHOOK_ROUTE,
    ChaosRun,
    print_chaos_report,
    verdict,
    wait_drained,
    wait_webhooks,
)
from tally.bench.errors import BenchError
from tally.bench.workloads import seed_tenant
from tally.load_client import API, Connection, Prober, bearer
from tally.stack import (
    Children,
    StackError,
    delete_queue,
    free_port,
    scratch_database,
    stack_environment,
)
from tally.webhook_receiver import EndpointNotRegistered, WebhookReceiver

STARTUP_TIMEOUT_SECONDS = 60.0
FUNDING = 10**9
BULK_SHARE = 0.03
PROBE_EVERY_SECONDS = 0.1
# Retries close together, so that a delivery the receiver missed while down arrives within
# the run (the production schedule waits minutes between late attempts).
CHAOS_WEBHOOK_SCHEDULE = "0,1,2,3,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5"
WORKERS = ["worker-a", "worker-b"]


def run_chaos(args: argparse.Namespace) -> int:
    """The chaos run; 0 when no violation was found."""
    if args.database_url:
        print("tally bench: --pattern chaos runs a PostgreSQL of its own (it restarts it)")
    work_dir = Path(tempfile.mkdtemp(prefix="tally-chaos-"))
    postgres: OwnPostgres | None = None
    try:
        postgres = OwnPostgres(work_dir)
        with (
            scratch_database(postgres.url, "tally_chaos", keep=False) as database_url,
            chaos_broker(args, work_dir) as broker,
        ):
            report = _chaos(args, postgres, broker, database_url, work_dir)
    except (BenchError, StackError, subprocess.SubprocessError) as error:
        print(f"tally bench: {error}\ntally bench: logs are in {work_dir}")
        return 1
    finally:
        if postgres is not None:
            with contextlib.suppress(Exception):
                postgres.start()
            postgres.close()
    print_chaos_report(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if report["violations"]:
        print(f"tally bench: logs are in {work_dir}")
        return 1
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _seed(database_url: str) -> tuple[str, str]:
    """The run's tenant: its id and admin key."""
    engine = make_engine(database_url, pool_size=1)
    tenant = seed_tenant(engine, "chaos")
    engine.dispose()
    return str(tenant.id), tenant.key(Scope.ADMIN)


def _start_stack(children: Children, port: int) -> None:
    """The API, two workers and the relay, as the faults expect them."""
    children.start("api", "api", "--port", str(port), "--workers", "2", "--threads", "16")
    for name in WORKERS:
        children.start(name, "worker", "--loglevel", "WARNING")
    children.start("relay", "relay")
    children.wait_for_api(f"http://127.0.0.1:{port}", STARTUP_TIMEOUT_SECONDS)


def _prepare(admin: Connection, receiver: WebhookReceiver) -> str:
    """Register the merchant's endpoint and fund every wallet; the id of a transaction to
    watch during the database's outage."""
    try:
        receiver.register(admin, WEBHOOK_ROUTE)
    except EndpointNotRegistered as error:
        raise BenchError(f"could not register the webhook endpoint: {error}") from None
    funding = admin.request(
        "POST", f"{API}/transactions/batch", json_body={"transactions": funding_items(FUNDING)}
    )
    if funding.status_code != 200:
        raise BenchError(f"funding failed: {funding.text}")
    return str(funding.json()["results"][0]["transaction"]["id"])


def _chaos(
    args: argparse.Namespace,
    postgres: OwnPostgres,
    broker: Broker,
    database_url: str,
    work_dir: Path,
) -> dict[str, Any]:
    seconds = args.chaos_seconds
    rate = args.rate or 300.0
    tenant_id, api_key = _seed(database_url)
    queue_name = f"tally-chaos-{uuid.uuid4().hex[:8]}"
    env = stack_environment(
        database_url,
        broker.url,
        {
            "TALLY_QUEUE": queue_name,
            "TALLY_LOG_LEVEL": "WARNING",
            "TALLY_WEBHOOK_RETRY_SCHEDULE": CHAOS_WEBHOOK_SCHEDULE,
            "TALLY_RELAY_AGE_SECONDS": "2",
        },
    )
    children = Children(env, log_dir=work_dir)
    port = free_port()
    receiver = WebhookReceiver()
    receiver.start()
    faults: list[Fault] = []
    try:
        _start_stack(children, port)
        with Connection(port, headers=bearer(api_key)) as admin:
            probe_id = _prepare(admin, receiver)
        load = MerchantLoad(port, api_key, rate, bulk_share=BULK_SHARE)
        path = f"{API}/transactions/{probe_id}"
        prober = Prober(
            port, path, PROBE_EVERY_SECONDS, headers=bearer(api_key), timeout=CLIENT_TIMEOUT_SECONDS
        )
        plan = schedule(seconds)
        print(
            f"tally bench: chaos on {args.broker}: {rate:.0f}/s offered for {seconds:.0f} s;"
            f" faults: {', '.join(f'{f.what} at {f.at:.0f}s' for f in plan)}",
            flush=True,
        )
        prober.start()
        started = time.monotonic()
        targets = Targets(children, WORKERS, postgres, broker, receiver)
        injector = threading.Thread(
            target=inject, args=(plan, started, targets, faults), daemon=True
        )
        injector.start()
        load.run(seconds)
        load_ended = time.monotonic()
        injector.join(120)
        load.finish(timeout=120)
        run = ChaosRun(args.broker, rate, seconds, tenant_id, load, [], started, faults, receiver)
        # One engine for every check after the load (PostgreSQL has restarted by then).
        checks = make_engine(database_url, pool_size=1)
        run.drained = wait_drained(checks, tenant_id)
        run.drain_seconds = time.monotonic() - load_ended
        prober.stop()
        run.probes = prober.samples
        run.webhooks_missing = wait_webhooks(checks, tenant_id, receiver, timeout=120)
    finally:
        children.stop()
        receiver.stop()
        delete_queue(broker.url, queue_name)
    try:
        return verdict(run, checks)
    finally:
        checks.dispose()
