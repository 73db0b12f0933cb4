"""The orchestration of `tally bench`: backends, the stack, the phases, the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from config.settings import Settings
from tally.bench.arguments import (
    BOTH,
    CHAOS,
    DEFAULT_COUNT,
    LEDGER_TIME,
    PATTERNS,
    SLOW_CLIENTS,
    WALLET_TOKENS,
    WALLET_TOKENS_DEFAULT_COUNT,
)
from tally.bench.errors import BenchError
from tally.bench.monitor import ProcessMonitor
from tally.bench.phases import Bench
from tally.bench.raw_sql import raw_baseline
from tally.bench.report import print_summary
from tally.bench.workloads import BENCH_RATE_LIMIT
from tally.stack import (
    Children,
    StackError,
    delete_queue,
    free_port,
    scratch_database,
    stack_environment,
)

STARTUP_TIMEOUT_SECONDS = 60.0


@contextlib.contextmanager
def bench_database(server_url: str | None, work_dir: Path, keep: bool) -> Iterator[str]:
    """A fresh, migrated database on the given server (or an embedded one); dropped after."""
    with contextlib.ExitStack() as cleanup:
        if not server_url:
            from tally.embedded import embedded_postgres

            server_url = cleanup.enter_context(embedded_postgres(work_dir / "pgdata"))
        yield cleanup.enter_context(scratch_database(server_url, "tally_bench", keep=keep))


@contextlib.contextmanager
def bench_broker(args: argparse.Namespace, work_dir: Path) -> Iterator[str]:
    """The broker URL given for `--broker`, or an embedded Redis for the run."""
    url = args.broker_url or os.environ.get(f"TALLY_BENCH_{args.broker.upper()}_URL")
    if url:
        yield url
        return
    if args.broker == "amqp":
        raise BenchError("--broker amqp needs --broker-url or TALLY_BENCH_AMQP_URL")
    from tally.embedded import embedded_redis

    with embedded_redis(work_dir / "redis") as url:
        yield url


def start_stack(args: argparse.Namespace, children: Children) -> int:
    """`tally api`, `tally worker` and `tally relay` as sized by the flags; the API's port."""
    port = free_port()
    children.start(
        "api",
        *("api", "--port", str(port)),
        *("--workers", str(args.api_workers), "--threads", str(args.api_threads)),
    )
    # Each instance is a `tally worker` of its own, as on separate hosts.
    for instance in range(args.worker_instances):
        children.start(
            "worker" if instance == 0 else f"worker-{instance}",
            *("worker", "--concurrency", str(args.worker_concurrency)),
            *("--pool", args.worker_pool, "--loglevel", "WARNING"),
        )
    children.start("relay", "relay")
    children.wait_for_api(f"http://127.0.0.1:{port}", STARTUP_TIMEOUT_SECONDS)
    return port


def _environment(engine: Any) -> dict[str, Any]:
    from ledger.measurements import server_version

    with engine.connect() as conn:
        version = server_version(conn)
    return {"cpus": os.cpu_count(), "loadavg": list(os.getloadavg()), "postgres": version}


def _print_machine_load(environment: dict[str, Any]) -> None:
    """The machine's load before the run; a warning when something else is using it."""
    import psutil

    cpus = environment["cpus"] or 1
    one, five, fifteen = environment["loadavg"]
    # The load average lags by minutes (an earlier run still shows in it): what the CPUs
    # do right now says whether this run shares the machine.
    busy = psutil.cpu_percent(interval=1.0)
    environment["cpu_busy_percent_before"] = busy
    print(
        f"tally bench: {cpus} CPUs, {busy:.0f}% busy over the last second, "
        f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
    )
    if busy > 25:
        print(
            "tally bench: WARNING the machine is busy: these results will not compare with "
            "a run on a quiet machine",
            flush=True,
        )


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; 0 when every transaction is final, error-free and the ledger holds."""
    if args.count is None:
        args.count = WALLET_TOKENS_DEFAULT_COUNT if args.pattern == WALLET_TOKENS else DEFAULT_COUNT
    if args.pattern == CHAOS:
        from tally.bench.chaos.run import run_chaos

        return run_chaos(args)
    if args.count < 1 or args.wallets < 2 or args.latency_count < 0:
        print(
            "tally bench: --count must be >= 1, --wallets >= 2 and --latency-count >= 0",
            file=sys.stderr,
        )
        return 2
    if args.pattern == LEDGER_TIME and not (
        args.as_of_reads >= 1 and 1 <= args.statement_entries <= args.history_entries - 3
    ):
        print(
            "tally bench: --as-of-reads must be >= 1 and --statement-entries between 1 and "
            "--history-entries - 3",
            file=sys.stderr,
        )
        return 2
    patterns = {"both": BOTH, "all": PATTERNS}.get(args.pattern, (args.pattern,))
    work_dir = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    report: dict[str, Any] = {"command": ["tally", *sys.argv[1:]], "config": vars(args).copy()}
    report["config"].pop("handler", None)
    try:
        with (
            bench_database(args.database_url, work_dir, args.keep_database) as database_url,
            bench_broker(args, work_dir) as broker_url,
        ):
            ok = _bench(args, patterns, database_url, broker_url, work_dir, report)
    except (BenchError, StackError) as error:
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
    # The latency measurement's webhook receiver listens on 127.0.0.1 (private targets
    # are allowed).
    env = stack_environment(
        database_url,
        broker_url,
        {
            "TALLY_QUEUE": queue,
            "TALLY_LOG_LEVEL": os.environ.get("TALLY_LOG_LEVEL", "WARNING"),
            # The budget of a credential without its own, a wallet token's: the bench
            # measures capacity, not the limiter (the bench keys have theirs).
            "TALLY_RATE_LIMIT_PER_SECOND": str(BENCH_RATE_LIMIT),
        },
    )
    bench = Bench(args, database_url, broker_url)
    bench.seed()
    report["environment"] = _environment(bench.engine) | {"broker": args.broker}
    _print_machine_load(report["environment"])
    children = Children(env, log_dir=work_dir)
    sampler = ProcessMonitor(children)
    print(f"tally bench: {args.broker} broker, {', '.join(patterns)}", flush=True)
    try:
        port = start_stack(args, children)
        sampler.start()
        if args.latency_count:
            from tally.bench.latency import measure_latency

            print(f"  latency: {args.latency_count} lone top-ups with webhooks ...", flush=True)
            report["latency"] = measure_latency(bench.engine, port, args.latency_count)
        if SLOW_CLIENTS in patterns:
            from tally.bench.slow_clients import run_slow_clients

            bench.runs += run_slow_clients(bench, port, sampler, report)
        if LEDGER_TIME in patterns:
            from tally.bench.ledger_time import run_ledger_time

            report["ledger_time"] = run_ledger_time(bench, port, sampler)
        if WALLET_TOKENS in patterns:
            _wallet_tokens(bench, port, sampler, database_url, report)
        scenarios = (SLOW_CLIENTS, LEDGER_TIME, WALLET_TOKENS)
        for pattern in (p for p in patterns if p not in scenarios):
            run = bench.run_pattern(pattern, port, sampler)
            # The raw SQL write is a transfer: no like-for-like baseline for holds.
            if not args.skip_raw and pattern != "holds":
                print(f"  {pattern}: raw SQL ledger write ...", flush=True)
                run.raw_sql = raw_baseline(bench.engine, database_url, pattern, args)
                if run.raw_sql["rate"]:
                    run.applied_to_raw_ratio = round(run.applied_rate / run.raw_sql["rate"], 3)
            bench.runs.append(run)
    finally:
        sampler.stop()
        children.stop()
        delete_queue(broker_url, queue)
    invariants_ok, lines = bench.verify()
    bench.engine.dispose()
    report["environment"]["loadavg_after"] = list(os.getloadavg())
    report["runs"] = [asdict(run) for run in bench.runs]
    report["memory_peak_mb"] = ProcessMonitor.by_role(sampler.peaks)
    report["invariants"] = {"ok": invariants_ok, "report": lines}
    errors = sum(run.errors["total"] for run in bench.runs)
    errors += (report.get("latency") or {}).get("errors", 0)
    errors += (report.get("ledger_time") or {}).get("errors", 0)
    errors += (report.get("wallet_tokens") or {}).get("errors", 0)
    report["ok"] = invariants_ok and errors == 0
    print_summary(bench.runs, report, errors)
    return bool(report["ok"])


def _wallet_tokens(
    bench: Bench, port: int, sampler: ProcessMonitor, database_url: str, report: dict[str, Any]
) -> None:
    """The wallet-tokens pattern, then the raw SQL write its spends compare with: the hot
    one (every transfer into one account, as every spend lands on the tenant's revenue)."""
    from tally.bench.wallet_tokens import run_wallet_tokens

    result = report["wallet_tokens"] = run_wallet_tokens(bench, port, sampler)
    result["raw_sql"] = None
    if not bench.args.skip_raw:
        print(f"  {WALLET_TOKENS}: raw SQL ledger write ...", flush=True)
        result["raw_sql"] = raw_baseline(bench.engine, database_url, "hot", bench.args)
