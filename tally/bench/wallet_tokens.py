"""The `wallet-tokens` pattern: what the API costs per request made with a wallet token
(docs/api.md#wallet-tokens) beside the same request made with an API key.

On the bench's tenant: one wallet topped up through the API, and a wallet token for it
(scopes read and spend) issued through the API with the bench's key. Then, over HTTP on
keep-alive connections (`--concurrency`, default 8, threads of this process): `--count`
`GET /wallets/{user}/balance?asset_code=` with the key, then as many with the token, then
`--count` small spends (`POST /transactions`, each its own reference id) with the key and
as many with the token, each phase after a few unmeasured requests of its own. Around each
phase the stack's CPU time is sampled (tally/bench/monitor.py), the spend phases' once
every spend is final: the API's CPU milliseconds per request, key against token, for reads
and for spends, with requests/s and p50/p99 latency; spends are counted applied from the
ledger, not from what was sent. The raw SQL write of the hot pattern (every transfer into
one account, as these spends all land on the tenant's revenue) runs after, unless
`--skip-raw`.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from tally.bench.errors import BenchError
from tally.bench.monitor import ProcessMonitor
from tally.bench.phases import Bench
from tally.bench.report import percentiles
from tally.bench.workloads import ASSET, FUNDING, MAX_AMOUNT
from tally.load_client import API, Connection, bearer

USER = "wallet-tokens"
CONNECTIONS = 8
WARM_UP_REQUESTS = 50
TOKEN_TTL_SECONDS = 3600
ACCEPTED = (200, 202)
CREDENTIALS = ("key", "token")


class Phase:
    """One credential's requests of one kind, sent from `connections` threads: latencies,
    statuses and the first few refusals."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.samples: list[str] = []
        self.seconds = 0.0
        self._lock = threading.Lock()

    def send(
        self, port: int, headers: dict[str, str], requests: list[tuple[str, str, Any]], threads: int
    ) -> Phase:
        """Send the (method, path, JSON body) requests, split over `threads` connections."""

        def run(share: list[tuple[str, str, Any]]) -> None:
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            samples: list[str] = []
            with Connection(port, headers=headers) as connection:
                for method, path, body in share:
                    started = time.perf_counter()
                    answer = connection.request(method, path, json_body=body)
                    latencies.append(time.perf_counter() - started)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code not in ACCEPTED and len(samples) < 3:
                        samples.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
            with self._lock:
                self.latencies += latencies
                for status, count in statuses.items():
                    self.statuses[status] = self.statuses.get(status, 0) + count
                self.samples += samples

        shares = [requests[n::threads] for n in range(threads)]
        workers = [threading.Thread(target=run, args=(share,)) for share in shares if share]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.seconds = time.perf_counter() - started
        return self

    @property
    def refused(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in ACCEPTED)


class WalletTokens:
    """The scenario's wallet, credentials and what it measured."""

    def __init__(self, bench: Bench, port: int, sampler: ProcessMonitor) -> None:
        self.bench = bench
        self.port = port
        self.sampler = sampler
        self.count = bench.args.count
        self.threads = bench.args.concurrency or CONNECTIONS
        self.run_id = f"tokens-{uuid.uuid4().hex[:6]}"
        self.headers = {"key": bearer(bench.api_key)}
        self.errors = 0
        self.samples: list[str] = []

    def problem(self, what: str, count: int = 1) -> None:
        self.errors += count
        if len(self.samples) < 10:
            self.samples.append(what)
            print(f"  wallet-tokens: {what}", flush=True)

    def setup(self) -> None:
        """Fund the wallet and issue its token, both through the API with the bench's key."""
        with Connection(self.port, headers=self.headers["key"]) as connection:
            funded = connection.request(
                "POST",
                f"{API}/transactions",
                json_body={
                    "type": "topup",
                    "asset_code": ASSET,
                    "amount": FUNDING,
                    "user_id": USER,
                    "reference_id": f"{self.run_id}-fund-0",
                    "payment_method": "bench",
                },
            )
            if funded.status_code not in ACCEPTED:
                raise BenchError(f"wallet-tokens: the top-up answered {funded.status_code}")
            if self.bench.wait_terminal(f"{self.run_id}-fund-", 1, 60):
                raise BenchError("wallet-tokens: the top-up was not applied")
            issued = connection.request(
                "POST",
                f"{API}/wallet-tokens",
                json_body={
                    "user_id": USER,
                    "scopes": ["read", "spend"],
                    "ttl": TOKEN_TTL_SECONDS,
                    "max_amount": MAX_AMOUNT,
                    "spend_limit": 4 * (self.count + WARM_UP_REQUESTS) * MAX_AMOUNT,
                    "asset_codes": [ASSET],
                },
            )
        if issued.status_code != 201:
            raise BenchError(
                f"wallet-tokens: issuing the token answered {issued.status_code}: "
                f"{issued.text[:200]}"
            )
        self.headers["token"] = bearer(issued.json()["token"])

    def reads(self, count: int) -> list[tuple[str, str, Any]]:
        path = f"{API}/wallets/{quote(USER)}/balance?{urlencode({'asset_code': ASSET})}"
        return [("GET", path, None)] * count

    def spends(self, label: str, count: int) -> list[tuple[str, str, Any]]:
        return [
            (
                "POST",
                f"{API}/transactions",
                {
                    "type": "spend",
                    "asset_code": ASSET,
                    "amount": 1 + n % MAX_AMOUNT,
                    "user_id": USER,
                    "reference_id": f"{self.run_id}-{label}-{n}",
                },
            )
            for n in range(count)
        ]

    def measure(self, kind: str, label: str) -> dict[str, Any]:
        """One phase: unmeasured warm-up, then `count` requests with CPU sampled around them
        (spends: until every one is final)."""
        headers = self.headers[label]
        if kind == "reads":
            warm, measured = self.reads(WARM_UP_REQUESTS), self.reads(self.count)
        else:
            warm = self.spends(f"warm{label}", WARM_UP_REQUESTS)
            measured = self.spends(label, self.count)
        Phase().send(self.port, headers, warm, self.threads)
        if kind == "spends":
            self.bench.wait_terminal(f"{self.run_id}-warm{label}-", WARM_UP_REQUESTS, 60)
        print(f"  wallet-tokens: {self.count} {kind} with the {label} ...", flush=True)
        before = self.sampler.cpu_by_process()
        phase = Phase().send(self.port, headers, measured, self.threads)
        result: dict[str, Any] = {}
        if kind == "spends":
            prefix = f"{self.run_id}-{label}-"
            stranded = self.bench.wait_terminal(prefix, self.count, 60 + self.count / 50)
            stats = self.bench.measured_stats(f"{self.run_id}-{label}")
            applied = stats.statuses.get("applied", 0)
            span = stats.last_completed - stats.first_created
            result |= {
                "applied": applied,
                "statuses": stats.statuses,
                "applied_rate": round(applied / span, 1) if span > 0 else 0.0,
                "apply_latency_ms": percentiles(stats.latencies),
            }
            if applied != self.count:
                self.problem(
                    f"{label} spends: {applied} of {self.count} applied ({stats.statuses}, "
                    f"{stranded} never final)",
                    self.count - applied,
                )
        cpu = self.sampler.cpu_delta(before, self.sampler.cpu_by_process())
        if phase.refused:
            self.problem(f"{label} {kind}: {phase.refused} refused: {phase.samples}", phase.refused)
        latency = percentiles(phase.latencies)
        return result | {
            "requests": len(measured),
            "statuses": {str(status): n for status, n in sorted(phase.statuses.items())},
            "requests_per_second": round(len(measured) / phase.seconds, 1) if phase.seconds else 0,
            "latency_ms": {"p50": latency["p50"], "p99": latency["p99"]},
            "cpu_ms_per_request": {
                role: round(seconds * 1000 / len(measured), 3)
                for role, seconds in sorted(cpu.items())
            },
        }


def run_wallet_tokens(bench: Bench, port: int, sampler: ProcessMonitor) -> dict[str, Any]:
    """Set up the wallet and its token, measure the four phases; the report's
    `wallet_tokens` section."""
    scenario = WalletTokens(bench, port, sampler)
    scenario.setup()
    result: dict[str, Any] = {"count": scenario.count, "connections": scenario.threads}
    for kind in ("reads", "spends"):
        result[kind] = {label: scenario.measure(kind, label) for label in CREDENTIALS}
        api = [result[kind][label]["cpu_ms_per_request"].get("api") for label in CREDENTIALS]
        if all(api):
            result[kind]["token_to_key_api_cpu"] = round(api[1] / api[0], 2)
    result["errors"] = scenario.errors
    result["error_samples"] = scenario.samples
    return result
