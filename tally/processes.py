"""The long-running processes: the API under gunicorn, the Celery worker, the relay."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any

from config.settings import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child process: receive SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    # Not Linux: no such call, and the parent's shutdown path still stops its children.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process_groups(processes: Iterable[subprocess.Popen[Any]], timeout: float) -> None:
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


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TALLY_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the API with gunicorn (threaded workers: long-polls hold a thread, not a process)."""
    from gunicorn.app.base import BaseApplication

    settings.require_database_url()
    settings.require_broker_url()

    class TallyGunicorn(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "worker_class": "gthread",
                "threads": args.threads,
                "timeout": 60,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": "-" if args.access_log else None,
                "errorlog": "-",
                "loglevel": "info",
            }
            # Gunicorn >= 25 opens one control socket per user by default: several APIs on one
            # machine (tests, bench) would fight over it, and Tally does not use it.
            if "control_socket_disable" in self.cfg.settings:
                options["control_socket_disable"] = True
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from api import create_app

            return create_app(Settings.from_env())

    TallyGunicorn().run()
    return 0


def run_relay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-publish stale queued transactions and deliver webhooks until SIGTERM or SIGINT."""
    from ledger.db import make_engine
    from worker.publisher import Publisher
    from worker.relay import relay_once, run_periodically
    from worker.webhook_dispatcher import run_dispatcher

    _configure_logging()
    engine = make_engine(settings.require_database_url(), pool_size=2)
    publisher = Publisher(settings.require_broker_url(), settings.queue)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def relay() -> int:
        return relay_once(
            engine, publisher, settings.relay_age_seconds, chunk_size=settings.batch_size
        )

    log.info("relay running every %.1fs", settings.relay_interval_seconds)
    dispatcher = run_dispatcher(settings, stop)
    run_periodically([relay], settings.relay_interval_seconds, stop)
    # Sends under way finish (each within the webhook timeout) before the process exits.
    dispatcher.join(settings.webhook_timeout_seconds + 5)
    return 0


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The Celery worker, with the relay alongside it in its own process."""
    from worker.main import create_worker_app

    _configure_logging()
    # One INFO line per task ("succeeded in ...") costs more than a small batch's work;
    # outcomes are in the database, failures still log at WARNING and above.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    app = create_worker_app(settings)
    relay = None
    if not args.no_relay:
        relay = subprocess.Popen(
            [sys.executable, "-m", "tally.cli", "relay"], preexec_fn=die_with_parent
        )
    try:
        app.worker_main(
            [
                "worker",
                f"--concurrency={args.concurrency}",
                f"--pool={getattr(args, 'pool', 'prefork')}",
                f"--queues={settings.queue}",
                f"--loglevel={args.loglevel}",
                f"--hostname=tally-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait(10)
    return 0
