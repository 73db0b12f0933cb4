"""The load generator: client processes that POST prepared bodies and time each answer.

Client processes are spawned fresh and import only this module and `tally.load_client`:
standard library only.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tally.load_client import API, Connection, bearer, render_request

REQUEST_ATTEMPTS = 3


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


def _client_thread(job: ClientJob, indexes: range, out: dict[str, Any]) -> None:
    headers = {**bearer(job.api_key), "Content-Type": "application/json"}
    connection = Connection(job.port)
    latencies: list[float] = out["latencies"]
    statuses: Counter[int] = out["statuses"]
    for index in indexes:
        if job.interval:
            delay = job.start_at + index * job.interval - time.time()
            if delay > 0:
                time.sleep(delay)
        raw = render_request("POST", job.path, headers, job.bodies[index])
        started = time.perf_counter()
        sent_at = time.time()
        status, payload = 0, b""
        for attempt in range(REQUEST_ATTEMPTS):
            try:
                answer = connection.send(raw)
                status, payload = answer.status_code, answer.content
                break
            except OSError as error:
                # Same body, same reference ids: a retried submission is an idempotent replay.
                out["retries"] += 1
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


def drive(
    port: int,
    api_key: str,
    bodies: list[bytes],
    items_per_body: int,
    concurrency: int,
    rate: float,
    clients: int,
) -> dict[str, Any]:
    """Submit the bodies over HTTP from client processes; merged client results."""
    clients = max(1, min(clients, concurrency, len(bodies)))
    start_at = time.time() + 2.0  # spawned clients import, then all start together
    interval = (items_per_body * clients / rate) if rate > 0 else 0.0
    jobs = []
    for number in range(clients):
        share = bodies[number::clients]
        threads = max(1, concurrency // clients + (number < concurrency % clients))
        jobs.append(
            ClientJob(
                port=port,
                api_key=api_key,
                path=f"{API}/transactions/batch" if items_per_body > 1 else f"{API}/transactions",
                bodies=share,
                items_per_body=items_per_body,
                threads=min(threads, len(share)),
                # Offset each process's schedule so the offered load is evenly spaced.
                start_at=start_at + (number * items_per_body / rate if rate > 0 else 0.0),
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
