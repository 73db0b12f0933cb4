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

from sqlalchemy.exc import OperationalError

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
    """Serve the API with granian: Rust owns the sockets, Flask runs in a bounded thread pool
    per worker process, long-polls wait on the event loop (api/server.py)."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server import Server

    from ledger.db import guard_api_login, make_engine

    # Refused here, before any granian worker starts (each would fail and be respawned):
    # a missing setting, or a database login that could undo row-level security.
    settings.require_broker_url()
    settings.require_webhook_secret_keys()
    engine = make_engine(settings.require_api_database_url(), pool_size=1, max_overflow=0)
    try:
        guard_api_login(engine)
    except OperationalError as error:
        # It may start before the database: each app checks every connection it opens.
        log.warning("could not check the API's database login now: %s", error.orig)
    finally:
        engine.dispose()
    # Each granian worker builds its app from the environment (api.server.create_server).
    if args.threads is not None:
        os.environ["TALLY_API_THREADS"] = str(args.threads)
    server = Server(
        "api.server:create_server",
        factory=True,
        interface=Interfaces.RSGI,
        address=args.host,
        port=args.port,
        workers=args.workers,
        loop=Loops.asyncio,
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.api_header_timeout_seconds * 1000),
            keep_alive=True,
        ),
        # Connections granian takes on per worker: idle and slow ones are cheap (a future
        # each), so the bound is far above what the Flask threads could serve at once.
        backlog=2048,
        backpressure=4096,
        log_access=args.access_log,
        respawn_failed_workers=True,
        workers_kill_timeout=10,
    )
    server.serve()
    return 0


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The Celery worker: applies queued transactions; nothing else runs in its process group."""
    from worker.main import create_worker_app

    _configure_logging()
    # One INFO line per task ("succeeded in ...") costs more than a small batch's work;
    # outcomes are in the database, failures still log at WARNING and above.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    # With a quorum queue Celery sets up its native delayed delivery and warns, at every
    # start, that ETA tasks on Tally's direct exchange would block: Tally sends none.
    logging.getLogger("kombu.transport.native_delayed_delivery").setLevel(logging.ERROR)
    app = create_worker_app(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={args.concurrency}",
            f"--pool={args.pool}",
            # The broker's name for it: TALLY_QUEUE on Redis, its quorum queue on RabbitMQ.
            f"--queues={app.conf.task_default_queue}",
            f"--loglevel={args.loglevel}",
            f"--hostname=tally-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            # Its event heartbeat (one small message every 2 s) stays: it keeps the worker's
            # event dispatcher on, without which `celery control enable_events` is answered
            # but sends nothing, and it is how Flower tells a worker is online.
        ]
    )
    return 0


def run_relay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-publish stale queued transactions, expire due holds (and deliver webhooks) until
    SIGTERM or SIGINT."""
    from ledger.db import make_engine
    from worker.publisher import Publisher
    from worker.relay import (
        at_most_every,
        expire_holds_once,
        relay_once,
        run_periodically,
        seal_once,
    )
    from worker.webhook_dispatcher import run_dispatcher

    _configure_logging()
    engine = make_engine(settings.require_database_url(), pool_size=2)
    # One message per worker batch at most: a worker applies what one message carries.
    publisher = Publisher(
        settings.require_broker_url(), settings.queue, max_ids=settings.batch_size
    )
    stop = _stop_on_signals()

    def relay() -> int:
        return relay_once(engine, publisher, settings.relay_age_seconds)

    log.info(
        "relay running every %.1fs%s",
        settings.relay_interval_seconds,
        "" if args.no_webhooks else ", delivering webhooks",
    )
    dispatcher = None if args.no_webhooks else run_dispatcher(settings, stop)

    def expire_holds() -> int:
        return expire_holds_once(engine)

    def seal() -> int:
        return len(seal_once(engine))

    seal_job = at_most_every(settings.seal_interval_seconds, seal)
    run_periodically([relay, expire_holds, seal_job], settings.relay_interval_seconds, stop)
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
