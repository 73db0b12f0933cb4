"""The backends the chaos run breaks: a PostgreSQL and a Redis of its own, or the given
RabbitMQ, each with `stop`, `start` and `close` (docs/operations.md#the-chaos-run)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from tally.bench.errors import BenchError
from tally.stack import free_port


class Broker(Protocol):
    """A broker the run can stop and start again."""

    url: str

    def stop(self) -> None: ...
    def start(self) -> None: ...
    def close(self) -> None: ...


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until `condition()` holds; BenchError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a condition with a deadline


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
        return True
    except Exception:
        return False


class OwnPostgres:
    """A PostgreSQL of the run's own (pgserver, on a socket in the run's folder), which it
    may stop and start."""

    def __init__(self, work_dir: Path) -> None:
        # platformdirs warns that XDG_RUNTIME_DIR is unset (usual under root); pgserver copes.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

        pgdata = work_dir / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        """A fast shutdown: connections are cut, nothing committed is lost."""
        import pgserver

        pgserver.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        """Start the server again (a no-op if it runs)."""
        self.server.ensure_postgres_running()

    def close(self) -> None:
        """Stop the server for good."""
        self.server.cleanup()


class OwnRedis:
    """A redis-server of the run's own on a loopback port, append-only, restartable."""

    def __init__(self, work_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError(
                "the chaos run needs redis-server on PATH (apt-get install redis-server)"
            )
        self.dir = work_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.command = [
            binary,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--maxmemory-policy", "noeviction"),
        ]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server and wait until it answers."""
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 (the server's own log)
        self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        until(lambda: _answers(client.ping), 10, "redis-server to start")

    def stop(self) -> None:
        """SHUTDOWN (SIGTERM): the append-only file is flushed first."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def close(self) -> None:
        """Stop the server if it runs."""
        with contextlib.suppress(Exception):
            self.stop()


class RestartableRabbit:
    """The given RabbitMQ, restarted as an application (its queues and messages stay)."""

    def __init__(self, url: str) -> None:
        if shutil.which("rabbitmqctl") is None:
            raise BenchError("the chaos run on RabbitMQ needs rabbitmqctl to restart the broker")
        self.url = url

    def stop(self) -> None:
        """`rabbitmqctl stop_app`."""
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)

    def start(self) -> None:
        """`rabbitmqctl start_app`, then wait until its ports answer."""
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], check=False, timeout=60
        )

    def close(self) -> None:
        """Nothing to do: the broker was given, and it runs."""


@contextlib.contextmanager
def chaos_broker(args: argparse.Namespace, work_dir: Path) -> Iterator[Broker]:
    """The broker of the run: its own Redis, or the RabbitMQ of `--broker-url`."""
    if args.broker == "amqp":
        url = args.broker_url or os.environ.get("TALLY_BENCH_AMQP_URL")
        if not url:
            raise BenchError("--broker amqp needs --broker-url or TALLY_BENCH_AMQP_URL")
        broker: Broker = RestartableRabbit(url)
    else:
        broker = OwnRedis(work_dir)
    try:
        yield broker
    finally:
        broker.close()
