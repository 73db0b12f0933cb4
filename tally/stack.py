"""Running a Tally stack: child processes, ports, health checks and scratch databases.

The one toolkit behind `tally dev`, `tally bench` and the end-to-end tests. Every child
leads a process group of its own: a Ctrl-C in the terminal reaches only the parent, which
then stops each group whole (gunicorn's workers, Celery's pool) in order.
"""

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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from config.database_urls import sqlalchemy_url
from tally.load_client import HEALTH_PATH, Connection

TALLY = (sys.executable, "-m", "tally.cli")
# Gunicorn's and Celery's own graceful shutdowns take a few seconds; past this, SIGKILL.
STOP_TIMEOUT_SECONDS = 20.0
LOG_TAIL_CHARS = 4000


class StackError(RuntimeError):
    """A process of the stack could not start."""


# --- ports --------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    """Fail unless `host:port` can be bound: a health check there would reach a stranger."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise StackError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def health_status(base_url: str, timeout: float = 5.0) -> int | None:
    """The status code of the API's health check, or None when nothing answers."""
    # Generous: with the broker down, the check itself waits on a broker connect attempt.
    # Tally's own client rather than urllib: no proxy from the environment in between.
    try:
        with Connection.to(base_url, timeout=timeout) as connection:
            return connection.request("GET", HEALTH_PATH).status_code
    except OSError:
        return None


# --- environments -------------------------------------------------------------------------------

WEBHOOK_SECRET_KEYS = "TALLY_WEBHOOK_SECRET_KEYS"


def stack_environment(
    database_url: str, broker_url: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a stack's `tally` children: this process's, with the stack's
    database and broker, private webhook targets allowed, then `overrides`.

    Without TALLY_WEBHOOK_SECRET_KEYS in either, a new key is made up: right only for a
    stack whose database lives no longer than the run (bench, chaos); `tally dev` keeps its
    key in its data directory and passes it.
    """
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        }
    )
    env.update(overrides or {})
    if not env.get(WEBHOOK_SECRET_KEYS):
        from ledger.webhooks.secrets import new_key

        env[WEBHOOK_SECRET_KEYS] = new_key()
    return env


# --- process groups -----------------------------------------------------------------------------


def spawn_tally(
    args: Iterable[str], env: Mapping[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `tally <args>` leading its own process group; output to `log`, else inherited."""
    command = [*TALLY, *args]
    if log is None:
        return subprocess.Popen(command, env=dict(env), start_new_session=True)
    with log.open("wb") as handle:
        return subprocess.Popen(
            command,
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_groups(
    processes: Iterable[subprocess.Popen[Any]], timeout: float = STOP_TIMEOUT_SECONDS
) -> None:
    """SIGTERM each child's process group, wait up to `timeout`, SIGKILL what is left."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)


def terminate(processes: Iterable[psutil.Process], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop these processes if they still run: SIGTERM, then SIGKILL after `timeout`."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running():
                process.terminate()
                alive.append(process)
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for process in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(still, timeout=5)


def descendants(process: subprocess.Popen[Any]) -> list[psutil.Process]:
    """Every process below `process`, as far as it can still be seen."""
    try:
        return list(psutil.Process(process.pid).children(recursive=True))
    except psutil.Error:
        return []


class Children:
    """Named `tally` processes of one stack, each leading its own process group."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path | None = None,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `tally <args>` as `name`; its output goes to `<log_dir>/<name>.log` if set."""
        log = self.log_dir / f"{name}.log" if self.log_dir is not None else None
        self.processes[name] = spawn_tally(args, self.env, log)
        return self.processes[name]

    def exited(self) -> str | None:
        """The first child that is no longer running, described, or None."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        return None

    def log_tail(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.log_dir / f"{name}.log").read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return ""

    def wait_for_api(
        self,
        base_url: str,
        timeout: float,
        stop: threading.Event | None = None,
        *,
        degraded_ok: bool = False,
    ) -> bool:
        """Poll the health check until it answers 200 (any answer if `degraded_ok`).

        False when `stop` is set first; StackError when a child exits or time runs out.
        """
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = self.log_tail(name)
                    message = f"{name} exited with code {process.returncode} during startup"
                    raise StackError(f"{message}:\n{tail}" if tail else message)
            status = health_status(base_url)
            if status == 200 or (degraded_ok and status is not None):
                return True
            if time.monotonic() > deadline:
                raise StackError(f"the API at {base_url} was not healthy after {timeout:.0f}s")
            stop.wait(0.1)  # polling a starting server
        return False

    def kill(self, *names: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to these children's whole groups at once, wait for them, forget them."""
        processes = [self.processes.pop(name) for name in names]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        for process in processes:
            process.wait(self.stop_timeout)

    def stop(self) -> None:
        """SIGTERM every group, wait for all of them, SIGKILL whatever is left."""
        # Recorded first: a pool child could outlive its group leader and leave the group.
        below = [child for process in self.processes.values() for child in descendants(process)]
        stop_process_groups(self.processes.values(), self.stop_timeout)
        terminate(below, self.stop_timeout)
        self.processes.clear()


def delete_queue(broker_url: str, queue: str) -> None:
    """Delete Tally's queue `queue` (TALLY_QUEUE) from the broker, if it can be reached:
    runs share a broker, and a RabbitMQ (quorum) queue stays until it is deleted."""
    from kombu import Connection

    from worker.celery_app import broker_queue_name, uses_rabbitmq

    name = broker_queue_name(broker_url, queue)
    with contextlib.suppress(Exception), Connection(broker_url, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1)
        channel = connection.default_channel
        if uses_rabbitmq(broker_url):
            channel.queue_delete(name)
            channel.exchange_delete(name)
        else:
            # Redis's virtual transport deletes only queues this connection bound: purge first.
            channel.queue_purge(name)
            channel.queue_delete(name)


# --- scratch databases --------------------------------------------------------------------------


def with_database(server_url: str, name: str) -> str:
    """The same server, another database (the URL may carry a socket path in its query)."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, prefix: str) -> str:
    """Create an empty database named `<prefix>_<random>` on the server; its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop the database of `database_url`, closing its remaining connections."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def scratch_database(
    server_url: str, prefix: str, *, migrate: bool = True, keep: bool = False
) -> Iterator[str]:
    """A new database on the server, migrated unless told otherwise; dropped after unless kept."""
    url = create_database(server_url, prefix)
    try:
        if migrate:
            from tally.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        if not keep:
            drop_database(server_url, url)
