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
from tally.bench.pressure import LONG_POLL_WAIT_SECONDS, HealthProbe, PressureJob, run_pressure
from tally.bench.report import PCTS, RunResult, percentiles
from tally.bench.workloads import ASSET, seed_tenant

# The API bounds long-polls per tenant: spread them over this many tenants.
PRESSURE_TENANTS = 4
SETTLE_SECONDS = 3.0
# After the second run the slow clients stay on alone: long enough for every long-poll
# to wait out its full `wait` once more.
ALONE_SECONDS = LONG_POLL_WAIT_SECONDS + 5.0

PARK_FOREVER = """
UPDATE transactions SET next_attempt_at = now() + interval '1 day' WHERE id = :id
"""


def parked_targets(bench: Bench) -> list[tuple[str, str]]:
    """Tenants with a key and a transaction that stays queued: (api key, transaction id)."""
    from sqlalchemy import text

    from ledger.db import unit_of_work
    from ledger.intake import accept_transaction
    from ledger.transaction_request import TransactionRequest

    targets = []
    for number in range(PRESSURE_TENANTS):
        tenant = seed_tenant(bench.engine, f"bench-pressure-{number}", scope=Scope.WRITE)
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
            work.connection.execute(text(PARK_FOREVER), {"id": submission.id})
        targets.append((tenant.key(Scope.WRITE), str(submission.id)))
    return targets


def run_slow_clients(
    bench: Bench, port: int, sampler: ProcessMonitor, report: dict[str, Any]
) -> list[RunResult]:
    """The plain and the pressured uniform runs; the comparison goes into `report`."""
    args = bench.args
    with HealthProbe(port) as plain_health:
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
            "load_alone": _probed(plain_health.probes),
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


def format_slow_clients(result: dict[str, Any]) -> str:
    """The scenario's comparison as a few lines."""

    def trio(values: dict[str, float | None]) -> str:
        return "/".join("-" if values.get(k) is None else f"{values[k]:.0f}" for k in PCTS)

    pressure = result["pressure"]

    def health(setting: str) -> str:
        probed = result["health"][setting]
        latency = probed["latency_ms"]
        return (
            f"{latency['p50']}/{latency['p99']}/{latency['max']} "
            f"({probed['probes']} probes, {probed['failures']} failed)"
        )

    return "\n".join(
        [
            f"slow clients: {result['slow_connections']} trickling connections, "
            f"{result['long_polls']} long-polls",
            f"  applied/s plain {result['plain_applied_rate']:.0f}, with slow clients "
            f"{result['loaded_applied_rate']:.0f} (kept {result['throughput_kept']:.0%})",
            f"  accept p50/p95/p99 ms plain {trio(result['plain_accept_latency_ms'])}, "
            f"with slow clients {trio(result['loaded_accept_latency_ms'])}",
            "  /health p50/p99/max ms:",
            f"    beside the normal load alone          {health('load_alone')}",
            f"    beside the normal load + slow clients {health('load_and_slow_clients')}",
            f"    beside the slow clients alone         {health('slow_clients_alone')}",
            f"  trickling connections cut off and reopened {pressure['cut_off']}; long-polls "
            f"answered {pressure['polls_answered']} (parked >= 1 s: {pressure['polls_parked']}), "
            f"pending at the end {pressure['pending_at_end']}; pressure CPU "
            f"{pressure['cpu']:.1f} s",
        ]
    )
