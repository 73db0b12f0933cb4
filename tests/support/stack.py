"""A real Tally stack for end-to-end tests: `tally api`, `tally worker` and `tally relay`
as subprocesses, started and stopped through the toolkit `tally dev` and `tally bench` use."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine

from ledger import measurements
from tally.load_client import API, Connection, Response, bearer
from tally.stack import Children, StackError, delete_queue, free_port, stack_environment

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Worker:
    """A `tally worker` and the `tally relay` started with it, if any: their names in the
    stack's children."""

    celery: str
    relay: str | None = None


@dataclass
class Stack:
    """API, workers and relays of one test run, sharing the test database and one broker."""

    database_url: str
    broker_url: str
    log_dir: Path
    env: dict[str, str]
    base_url: str = ""
    workers: list[Worker] = field(default_factory=list)
    children: Children = field(init=False)
    _numbers: Iterator[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.children = Children(self.env, self.log_dir, stop_timeout=STOP_TIMEOUT)

    def _start(self, role: str, *args: str) -> str:
        name = f"{role}-{next(self._numbers)}"
        self.children.start(name, role, *args)
        return name

    def start_api(self, *, degraded_ok: bool = False) -> str:
        """Start the API and wait until it is healthy (or, if `degraded_ok`, answers at all);
        its name among the stack's children."""
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        name = self._start("api", "--port", str(port), "--workers", "1")
        try:
            self.children.wait_for_api(self.base_url, STARTUP_TIMEOUT, degraded_ok=degraded_ok)
        except StackError:
            # The fixture fails before it yields: nothing else would stop this API.
            self.children.kill(name)
            raise
        return name

    def start_worker(self, concurrency: int = 2, relay: bool = True) -> Worker:
        """A Celery worker, and a relay (which also delivers webhooks) unless `relay=False`."""
        celery = self._start("worker", "--concurrency", str(concurrency), "--loglevel", "WARNING")
        worker = Worker(celery, self._start("relay") if relay else None)
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: Worker, sig: int = signal.SIGKILL) -> None:
        """Kill a worker's process group (Celery parent and pool) and its relay's."""
        names = [worker.celery] if worker.relay is None else [worker.celery, worker.relay]
        self.children.kill(*names, sig=sig)
        self.workers.remove(worker)

    def kill_relay(self, worker: Worker, sig: int = signal.SIGKILL) -> Worker:
        """Kill only a worker's relay (its process group); the worker, now without one."""
        assert worker.relay is not None, "this worker runs no relay"
        self.children.kill(worker.relay, sig=sig)
        alone = Worker(worker.celery)
        self.workers[self.workers.index(worker)] = alone
        return alone

    def start_relay(self, worker: Worker) -> Worker:
        """Start a relay beside a worker that has none; the worker with its new relay."""
        assert worker.relay is None, "this worker runs a relay already"
        relayed = Worker(worker.celery, self._start("relay"))
        self.workers[self.workers.index(worker)] = relayed
        return relayed

    def stop(self) -> None:
        self.children.stop()
        self.workers.clear()
        if "TALLY_QUEUE" in self.env:
            delete_queue(self.broker_url, self.env["TALLY_QUEUE"])

    def client(self, api_key: str) -> ApiClient:
        return ApiClient(self.base_url, api_key)


class ApiClient:
    """A thin HTTP client bound to one API key, for a test's own requests and assertions
    (load goes through the load client: `submit_concurrently`)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(bearer(api_key))

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(f"{self.base_url}/api/v1{path}", json=json, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(f"{self.base_url}/api/v1{path}", timeout=60, **kwargs)

    def wait_final(self, transaction_id: str, timeout: int = 30) -> dict[str, Any]:
        """Long-poll a transaction until it is final; fails the test if it is not."""
        response = self.get(f"/transactions/{transaction_id}", params={"wait": timeout})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        assert body["status"] in {"applied", "rejected", "failed"}, body
        return body


METRICS_TOKEN = "test-metrics-token"


def stack_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """A test stack's environment (tally.stack.stack_environment): the run's webhook secret
    key comes from tests/conftest.py through os.environ."""
    return stack_environment(
        database_url,
        broker_url,
        {
            "TALLY_RELAY_AGE_SECONDS": "1",
            "TALLY_RELAY_INTERVAL_SECONDS": "0.5",
            "TALLY_LOG_LEVEL": "WARNING",
            "TALLY_METRICS_TOKEN": METRICS_TOKEN,
            # Each scrape reads the ledger afresh: tests compare scrapes before and after.
            "TALLY_METRICS_CACHE_SECONDS": "0",
            # Load tests submit faster than a key's default limit allows; the limit's own
            # tests (tests/integration/security/test_rate_limits.py) set theirs.
            "TALLY_RATE_LIMIT_PER_SECOND": "1000000",
            # Test runs may share a broker: each stack gets a queue of its own.
            "TALLY_QUEUE": f"tally-test-{uuid.uuid4().hex[:10]}",
            **extra,
        },
    )


def start_api_degraded(stack: Stack) -> None:
    """Start the stack's API when a dependency is meant to be down: wait until /health
    answers at all (503 included), not until it is healthy."""
    stack.start_api(degraded_ok=True)


def eventually(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until `condition()` returns something truthy, and return it; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)  # polling an observable condition, bounded by the deadline


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` seconds."""
    eventually(condition, timeout, what)


def submit_concurrently(
    base_url: str, api_key: str, calls: Sequence[tuple[str, dict[str, Any]]], threads: int = 32
) -> list[Response]:
    """POST each (path, body) from a pool of threads, one keep-alive connection of the load
    client per thread; the responses in the order of `calls`."""
    local = threading.local()
    connections: list[Connection] = []

    def post(call: tuple[str, dict[str, Any]]) -> Response:
        if not hasattr(local, "connection"):
            local.connection = Connection.to(base_url, headers=bearer(api_key))
            connections.append(local.connection)
        path, body = call
        response: Response = local.connection.request("POST", f"{API}{path}", json_body=body)
        return response

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(post, calls))
    finally:
        for connection in connections:
            connection.close()


def status_counts(engine: Engine, tenant_id: uuid.UUID) -> Counter[str]:
    """How many of the tenant's transactions are in each status, read from the database."""
    with engine.connect() as conn:
        return Counter(measurements.status_counts(conn, tenant_id))


def outcome_of(client: ApiClient, transaction_id: str, timeout: float = 120) -> dict[str, Any]:
    """Long-poll, 30 s at a time, until the transaction is final; fail after `timeout`
    seconds (a loaded machine may need more than one long-poll)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/transactions/{transaction_id}", params={"wait": 30})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in {"applied", "rejected", "failed"}:
            return body
        assert time.monotonic() < deadline, f"not final after {timeout:.0f}s: {body}"
