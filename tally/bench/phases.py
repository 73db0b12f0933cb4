"""The measured HTTP phases against a running stack: funding, warm-up, one pattern's run."""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from ledger import measurements
from ledger.vocabulary import Scope
from tally.bench.errors import BenchError
from tally.bench.load import drive
from tally.bench.monitor import ProcessMonitor
from tally.bench.report import RunResult, percentiles
from tally.bench.workloads import (
    bodies_for,
    captures_for,
    funding,
    holds_workload,
    seed_tenant,
    warm_up_items,
    workload,
)


class Bench:
    """The bench tenant on the bench database, and the phases measured against it."""

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
        """Create the bench tenant, its admin key and the bench asset."""
        tenant = seed_tenant(self.engine, "bench")
        self.api_key = tenant.key(Scope.ADMIN)
        self.tenant_id = str(tenant.id)

    def drive(
        self, port: int, items: list[dict[str, Any]], bulk_size: int, concurrency: int, rate: float
    ) -> dict[str, Any]:
        """Submit the items over HTTP from client processes; merged client results."""
        bodies = bodies_for(items, bulk_size)
        per_body = max(1, bulk_size)
        return drive(port, self.api_key, bodies, per_body, concurrency, rate, self.args.clients)

    def wait_terminal(self, prefix: str, expected: int, timeout: float) -> int:
        """Wait until every transaction of the phase is final; how many are still queued."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                queued, total = measurements.progress(conn, self.tenant_id, prefix)
            if (queued == 0 and total >= expected) or time.monotonic() > deadline:
                return queued + max(0, expected - total)
            time.sleep(0.2)  # polling the phase's progress, bounded by the deadline

    def measured_stats(self, run_id: str) -> measurements.Outcomes:
        """Statuses, first acceptance, last completion and apply latencies of a phase."""
        # Measured reference ids are "<run_id>-<n>"; the funding top-ups "<run_id>-fund-<n>".
        with self.engine.connect() as conn:
            return measurements.outcomes(
                conn, self.tenant_id, f"{run_id}-", excluding=f"{run_id}-fund-"
            )

    def fund(self, port: int, run_id: str) -> None:
        """Top up every wallet of the pattern, and wait until all of them are applied."""
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
        items = warm_up_items(run_id, count, self.args.wallets)
        self.drive(port, items, 1, concurrency, 0)
        stranded = self.wait_terminal(f"warm-{run_id}-", count, 60)
        if stranded:
            raise BenchError(f"{stranded} warm-up top-ups were not applied")

    def run_pattern(self, pattern: str, port: int, sampler: ProcessMonitor) -> RunResult:
        """Fund, warm up, submit the pattern's workload and read its outcome back."""
        args = self.args
        mode = "bulk" if args.bulk else "single"
        concurrency = args.concurrency or (4 if args.bulk else 32)
        run_id = f"{pattern}-{mode}-{uuid.uuid4().hex[:6]}"
        self.fund(port, run_id)
        if not args.bulk:
            self.warm_up(port, run_id, concurrency)
        if pattern == "holds":
            items = holds_workload(run_id, args.count, args.wallets, args.seed)
        else:
            items = workload(pattern, run_id, args.count, args.wallets, args.seed)
        sampler.take_run_peaks()
        cpu_before = sampler.cpu_by_process()
        print(f"  {pattern}: submitting {len(items)} ({mode}) ...", flush=True)
        bulk_size = args.bulk_size if args.bulk else 1
        client = self.drive(port, items, bulk_size, concurrency, args.rate)
        timeout = 60 + args.count / 100
        stranded = self.wait_terminal(f"{run_id}-", args.wallets + len(items), timeout)
        if pattern == "holds":
            # A capture names its hold's id, known once the hold is accepted: the captures
            # go second, and both halves count.
            captures = captures_for(self.hold_ids(run_id), run_id)
            print(f"  {pattern}: submitting {len(captures)} captures ({mode}) ...", flush=True)
            second = self.drive(port, captures, bulk_size, concurrency, args.rate)
            client = _merged(client, second)
            items += captures
            stranded = self.wait_terminal(f"{run_id}-", args.wallets + len(items), timeout)
        cpu = sampler.cpu_delta(cpu_before, sampler.cpu_by_process())
        cpu["clients"] = client["cpu"]
        stats = self.measured_stats(run_id)
        count = len(items)
        run = RunResult(
            pattern=pattern,
            mode=mode,
            broker=args.broker,
            count=count,
            concurrency=concurrency,
            offered_rate=args.rate or None,
        )
        run.memory_peak_mb = sampler.take_run_peaks()
        run.cpu_ms_per_tx = {
            role: round(seconds * 1000 / count, 3) for role, seconds in sorted(cpu.items())
        }
        wall = client["last"] - client["first"]
        run.intake_rate = round(count / wall, 1) if wall > 0 else 0.0
        span = stats.last_completed - stats.first_created
        run.applied_rate = round(count / span, 1) if span > 0 else 0.0
        run.accept_latency_ms = percentiles(client["latencies"])
        run.apply_latency_ms = percentiles(stats.latencies)
        run.statuses = stats.statuses
        http_errors = sum(n for code, n in client["statuses"].items() if code not in (200, 202))
        run.errors = {
            "http": http_errors,
            "batch_items": client["item_errors"],
            "failed": stats.statuses.get("failed", 0),
            "rejected": stats.statuses.get("rejected", 0),
            "not_terminal": stranded,
        }
        run.errors["total"] = sum(run.errors.values())
        run.error_samples = client["samples"]
        run.retries = client["retries"]
        return run

    def hold_ids(self, run_id: str) -> list[str]:
        """The ids of the pattern's holds, in the order they were sent."""
        with self.engine.connect() as conn:
            return measurements.ids_by_reference(conn, self.tenant_id, "hold", f"{run_id}-")

    def verify(self) -> tuple[bool, list[str]]:
        """The invariants of the whole bench database (every tenant of the run)."""
        from ledger.verify import verify_ledger

        with self.engine.connect() as conn:
            report = verify_ledger(conn)
        return report.ok, report.lines()


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One phase's client results from its two halves (the holds pattern)."""
    merged = {
        key: first[key] + second[key]
        for key in ("latencies", "samples", "statuses", "cpu", "item_errors", "retries")
    }
    merged["first"] = min(first["first"], second["first"])
    merged["last"] = max(first["last"], second["last"])
    return merged
