"""The long-running `tally` processes a supervisor runs: api, worker, relay, webhooks.

Each is one process (with its own pool of threads or children) that stops cleanly on
SIGTERM or SIGINT and starts nothing beside itself: `tally dev`, docker compose or systemd
runs each one and sees it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from config.settings import Settings

log = logging.getLogger(__name__)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TALLY_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )


def _stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


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


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The Celery worker: applies queued transactions; nothing else runs in its process group."""
    from worker.main import create_worker_app

    _configure_logging()
    # One INFO line per task ("succeeded in ...") costs more than a small batch's work;
    # outcomes are in the database, failures still log at WARNING and above.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    app = create_worker_app(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={args.concurrency}",
            f"--pool={args.pool}",
            f"--queues={settings.queue}",
            f"--loglevel={args.loglevel}",
            f"--hostname=tally-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


def run_relay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-publish stale queued transactions, expire due holds (and deliver webhooks) until
    SIGTERM or SIGINT."""
    from ledger.db import make_engine
    from worker.publisher import Publisher
    from worker.relay import expire_holds_once, relay_once, run_periodically
    from worker.webhook_dispatcher import run_dispatcher

    _configure_logging()
    engine = make_engine(settings.require_database_url(), pool_size=2)
    publisher = Publisher(settings.require_broker_url(), settings.queue)
    stop = _stop_on_signals()

    def relay() -> int:
        return relay_once(
            engine, publisher, settings.relay_age_seconds, chunk_size=settings.batch_size
        )

    log.info(
        "relay running every %.1fs%s",
        settings.relay_interval_seconds,
        "" if args.no_webhooks else ", delivering webhooks",
    )
    dispatcher = None if args.no_webhooks else run_dispatcher(settings, stop)

    def expire_holds() -> int:
        return expire_holds_once(engine)

    run_periodically([relay, expire_holds], settings.relay_interval_seconds, stop)
    if dispatcher is not None:
        # Sends under way finish (each within the webhook timeout) before the process exits.
        dispatcher.join(settings.webhook_timeout_seconds + 5)
    return 0


def run_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver webhooks, and nothing else, until SIGTERM or SIGINT."""
    from worker.webhook_dispatcher import run_dispatcher

    _configure_logging()
    settings.require_database_url()
    stop = _stop_on_signals()
    log.info("webhook dispatcher running")
    dispatcher = run_dispatcher(settings, stop)
    # A bounded wait: the signal handler runs in this thread between waits.
    while not stop.wait(1.0):
        if not dispatcher.is_alive():
            log.error("webhook dispatcher stopped unexpectedly")
            return 1
    # Sends under way finish (each within the webhook timeout) before the process exits.
    dispatcher.join(settings.webhook_timeout_seconds + 5)
    return 0
