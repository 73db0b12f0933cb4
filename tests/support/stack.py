"""A real Tally stack for end-to-end tests: `tally api` and `tally worker` as subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, text

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)  # polling a starting server; not a race being hidden
    raise RuntimeError(f"API not healthy after {STARTUP_TIMEOUT}s:\n{log.read_text()[-4000:]}")


@dataclass
class Stack:
    """API and workers of one test run, sharing the test database and one broker."""

    database_url: str
    broker_url: str
    log_dir: Path
    env: dict[str, str]
    base_url: str = ""
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}-{len(self.workers)}-{time.monotonic_ns()}.log"
        handle = log.open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "tally.cli", *args],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes its children too
        )

    def start_api(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.api = self._spawn("api", "api", "--port", str(port), "--workers", "1")
        _wait_healthy(self.base_url, self.api, sorted(self.log_dir.glob("api-*.log"))[-1])

    def start_worker(self, concurrency: int = 2, relay: bool = True) -> subprocess.Popen[bytes]:
        args = ["worker", "--concurrency", str(concurrency), "--loglevel", "WARNING"]
        if not relay:
            args.append("--no-relay")
        worker = self._spawn("worker", *args)
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Kill a worker's whole process group (Celery parent, pool children, relay)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, sig)
        worker.wait(30)
        self.workers.remove(worker)

    def stop(self) -> None:
        for worker in list(self.workers):
            self.kill_worker(worker, signal.SIGTERM)
        if self.api is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.api.pid, signal.SIGTERM)
            self.api.wait(30)
            self.api = None

    def client(self, api_key: str) -> ApiClient:
        return ApiClient(self.base_url, api_key)


class ApiClient:
    """A thin HTTP client bound to one API key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

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


def stack_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "TALLY_RELAY_AGE_SECONDS": "1",
            "TALLY_RELAY_INTERVAL_SECONDS": "0.5",
            "TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "TALLY_LOG_LEVEL": "WARNING",
            # Test runs may share a broker: each stack gets a queue of its own.
            "TALLY_QUEUE": f"tally-test-{uuid.uuid4().hex[:10]}",
        }
    )
    env.update(extra)
    return env


def start_api_degraded(stack: Stack) -> None:
    """Start the stack's API when a dependency is meant to be down: wait until /health
    answers at all (503 included), not until it is healthy."""
    port = free_port()
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.api = stack._spawn("api", "api", "--port", str(port), "--workers", "1")
    log = sorted(stack.log_dir.glob("api-*.log"))[-1]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if stack.api.poll() is not None:
            output = log.read_text()[-4000:]
            raise RuntimeError(f"API exited with {stack.api.returncode}:\n{output}")
        try:
            requests.get(f"{stack.base_url}/api/v1/health", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)  # polling a starting server
    raise RuntimeError(f"API not answering after {STARTUP_TIMEOUT}s:\n{log.read_text()[-4000:]}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)  # polling an observable condition with a deadline


def submit_concurrently(
    base_url: str, api_key: str, calls: Sequence[tuple[str, dict[str, Any]]], threads: int = 32
) -> list[requests.Response]:
    """POST each (path, body) from a pool of threads, one HTTP session per thread; the
    responses in the order of `calls`."""
    local = threading.local()

    def post(call: tuple[str, dict[str, Any]]) -> requests.Response:
        if not hasattr(local, "client"):
            local.client = ApiClient(base_url, api_key)
        path, body = call
        response: requests.Response = local.client.post(path, body)
        return response

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(post, calls))


def status_counts(engine: Engine, tenant_id: uuid.UUID) -> Counter[str]:
    """How many of the tenant's transactions are in each status, read from the database."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) FROM transactions WHERE tenant_id = :t GROUP BY status"),
            {"t": tenant_id},
        ).all()
    return Counter({status: count for status, count in rows})


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
