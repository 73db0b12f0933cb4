"""The `slow-clients` scenario: the normal load, alone and then beside slow clients.

The uniform pattern runs twice on the same stack: plain, then while `tally.bench.pressure`
keeps `--slow-connections` trickling connections and `--long-polls` pending long-polls
open and probes `/health`. `/health` is timed in three settings: beside the normal load
alone (a probe thread during the first run), and from the pressure's own probes, beside
the normal load and the slow clients (during the second run) and beside the slow clients
alone (before and after it). The long-polls wait on transactions of their own tenants
that stay queued throughout (their next attempt is a day away, so no worker claims them).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from dataclasses import replace
from typing import Any

from ledger.vocabulary import Scope
from tally.bench.monitor import ProcessMonitor
from tally.bench.phases import Bench
from tally.bench.pressure import (
    HEALTH_EVERY_SECONDS,
    LONG_POLL_WAIT_SECONDS,
    PressureJob,
    health_seconds,
    run_pressure,
)
from tally.bench.report import RunResult, percentiles
from tally.bench.workloads import ASSET, seed_tenant
from tally.load_client import HEALTH_PATH, Prober

# The API bounds long-polls per tenant: spread them over this many tenants.
PRESSURE_TENANTS = 4
SETTLE_SECONDS = 3.0
# After the second run the slow clients stay on alone: long enough for every long-poll
# to wait out its full `wait` once more.
ALONE_SECONDS = LONG_POLL_WAIT_SECONDS + 5.0


def parked_targets(bench: Bench) -> list[tuple[str, str]]:
    """Tenants with a key and a transaction that stays queued: (api key, transaction id)."""
    from ledger.db import unit_of_work
    from ledger.intake import accept_transaction
    from ledger.measurements import park_transaction
    from ledger.transaction_request import TransactionRequest

    targets = []
    for number in range(PRESSURE_TENANTS):
        tenant = seed_tenant(bench.engine, f"bench-pressure-{number}", scopes=[Scope.WRITE])
        with unit_of_work(bench.engine) as work:
            request = TransactionRequest(
                type="topup",
                reference_id=f"parked-{uuid.uuid4().hex}",
                user_id="parked",
                asset_code=ASSET,
                amount=1,
            ).validated()
            # Same commit: no worker can see it claimable before it is parked.
            submission = accept_transaction(work, tenant.id, request, admin=False)
            park_transaction(work, submission.id)
        targets.append((tenant.key(Scope.WRITE), str(submission.id)))
    return targets


def run_slow_clients(
    bench: Bench, port: int, sampler: ProcessMonitor, report: dict[str, Any]
) -> list[RunResult]:
    """The plain and the pressured uniform runs; the comparison goes into `report`."""
    args = bench.args
    with Prober(port, HEALTH_PATH, HEALTH_EVERY_SECONDS) as plain_health:
        plain = bench.run_pattern("uniform", port, sampler)
    plain_seconds = plain.count / plain.intake_rate if plain.intake_rate else 60.0
    job = PressureJob(
        port=port,
        duration=min(900.0, SETTLE_SECONDS + 2 * plain_seconds + ALONE_SECONDS),
        slow=args.slow_connections,
        targets=parked_targets(bench),
        long_polls=args.long_polls,
    )
    print(
        f"  slow-clients: {job.slow} trickling connections and {job.long_polls} long-polls "
        "open; uniform again ...",
        flush=True,
    )
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pending = pool.apply_async(run_pressure, (job,))
        # Let the pressure build up (spawn, connect) before the measured load starts.
        pending.wait(SETTLE_SECONDS)
        loaded_from = time.monotonic()
        loaded = replace(bench.run_pattern("uniform", port, sampler), pattern="uniform+slow")
        loaded_until = time.monotonic()
        seen = pending.get(timeout=job.duration + 60)
    # The pressure's own probes, inside the second run and outside it.
    probes = seen.pop("health_probes")
    beside_load = [s for when, s in probes if loaded_from <= when <= loaded_until]
    alone = [s for when, s in probes if not loaded_from <= when <= loaded_until]
    report["slow_clients"] = {
        "slow_connections": job.slow,
        "long_polls": job.long_polls,
        "plain_applied_rate": plain.applied_rate,
        "loaded_applied_rate": loaded.applied_rate,
        "throughput_kept": round(loaded.applied_rate / plain.applied_rate, 3)
        if plain.applied_rate
        else None,
        "plain_accept_latency_ms": plain.accept_latency_ms,
        "loaded_accept_latency_ms": loaded.accept_latency_ms,
        "health": {
            "load_alone": _probed([health_seconds(probed) for probed in plain_health.samples]),
            "load_and_slow_clients": _probed(beside_load),
            "slow_clients_alone": _probed(alone),
        },
        "pressure": seen,
    }
    return [plain, loaded]


def _probed(probes: list[float | None]) -> dict[str, Any]:
    """Percentiles of the answered probes (None: a failed one)."""
    answered = [seconds for seconds in probes if seconds is not None]
    return {
        "latency_ms": percentiles(answered),
        "probes": len(answered),
        "failures": len(probes) - len(answered),
    }
