"""The webhook dispatcher: claims due deliveries and sends them from a pool of threads.

It runs in the relay process. A claim leases deliveries in one short commit; each is then
sent by a pool thread and its result recorded in its own short commit. The database is the
queue of record: retries wait in `next_attempt_at`, and a dispatcher killed mid-send leaves
leases that expire, so its deliveries are claimed again (at-least-once, same webhook-id).

Isolation between endpoints: no endpoint may hold more than a few of the pool's threads,
and one whose last attempt failed (down, hanging, answering errors) gets only one, so a
dead or slow receiver costs one thread and one timeout at a time, never everyone's turn.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from ledger.db import unit_of_work
from ledger.events import WEBHOOK_NOTIFY_CHANNEL
from ledger.notifications import listen
from ledger.webhooks.dispatch import (
    AttemptResult,
    ClaimedDelivery,
    claim_due,
    fail_unsendable,
    record_attempt,
    seconds_until_next_due,
)
from ledger.webhooks.signing import webhook_headers
from worker.webhook_http import post_webhook

log = logging.getLogger(__name__)

# Threads one healthy endpoint may hold (at most a quarter of the pool); a failing one, one.
PER_ENDPOINT = 8
# Time, beyond the send timeout, for a sender to record its result before its lease lapses.
LEASE_MARGIN_SECONDS = 10.0
# Without notifications, look for due deliveries at least this often (a lost NOTIFY).
IDLE_POLL_SECONDS = 5.0
# Due deliveries that could not be claimed (endpoint at its share): look again this soon.
BUSY_POLL_SECONDS = 0.1
RECONNECT_DELAY_SECONDS = 1.0

Sender = Callable[..., AttemptResult]


class WebhookDispatcher:
    def __init__(self, settings: Settings, engine: Engine, send: Sender = post_webhook) -> None:
        self.settings = settings
        self.engine = engine
        self.send = send
        self.capacity = max(1, settings.webhook_concurrency)
        self.share = max(1, min(PER_ENDPOINT, self.capacity // 4))
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._failing: set[uuid.UUID] = set()
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="tally-webhook")

    def _room_for(self, endpoint_id: uuid.UUID) -> int:
        share = 1 if endpoint_id in self._failing else self.share
        return share - self._in_flight[endpoint_id]

    def dispatch_once(self) -> int:
        """Claim what is due and fits in the pool, and start sending it; how many."""
        with self._lock:
            free = self.capacity - sum(self._in_flight.values())
            failing = set(self._failing)
            room = {e: self._room_for(e) for e in self._in_flight}
        if free <= 0:
            return 0

        def room_for(endpoint_id: uuid.UUID) -> int:
            if endpoint_id in room:
                return room[endpoint_id]
            return 1 if endpoint_id in failing else self.share

        with unit_of_work(self.engine) as conn:
            claimed = claim_due(
                conn,
                limit=free,
                room_for=room_for,
                full=[e for e, left in room.items() if left <= 0],
                lease_seconds=self.lease_seconds,
            )
        with self._lock:
            for delivery in claimed:
                self._in_flight[delivery.endpoint_id] += 1
        for delivery in claimed:
            self._pool.submit(self._deliver, delivery)
        return len(claimed)

    def _deliver(self, delivery: ClaimedDelivery) -> None:
        succeeded = False
        try:
            if not delivery.enabled:
                with unit_of_work(self.engine) as conn:
                    fail_unsendable(conn, delivery, "endpoint disabled")
                return
            headers = webhook_headers(
                delivery.message_id, delivery.secrets, delivery.body, int(time.time())
            )
            result = self.send(
                delivery.url,
                delivery.body,
                headers,
                timeout=self.settings.webhook_timeout_seconds,
                allow_private=self.settings.webhook_allow_private_targets,
            )
            succeeded = result.succeeded
            with unit_of_work(self.engine) as conn:
                record_attempt(conn, delivery, result, self.settings.webhook_retry_schedule)
        except Exception:
            # The lease expires and the delivery is claimed again: nothing is lost.
            log.exception("webhook delivery %s: recording the attempt failed", delivery.id)
        finally:
            with self._lock:
                self._in_flight[delivery.endpoint_id] -= 1
                if self._in_flight[delivery.endpoint_id] <= 0:
                    del self._in_flight[delivery.endpoint_id]
                if succeeded:
                    self._failing.discard(delivery.endpoint_id)
                else:
                    self._failing.add(delivery.endpoint_id)
            self.wake.set()

    def _pause(self) -> float:
        with unit_of_work(self.engine) as conn:
            due_in = seconds_until_next_due(conn)
        if due_in is None:
            return IDLE_POLL_SECONDS
        return min(max(due_in, BUSY_POLL_SECONDS), IDLE_POLL_SECONDS)

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set, then let the sends under way finish."""
        listener = threading.Thread(
            target=self._listen, args=(stop,), name="tally-webhook-listener", daemon=True
        )
        listener.start()
        while not stop.is_set():
            self.wake.clear()
            try:
                claimed = self.dispatch_once()
                pause = 0.0 if claimed else self._pause()
            except SQLAlchemyError as error:
                log.warning("webhook dispatcher cannot reach the database: %s", error)
                pause = RECONNECT_DELAY_SECONDS
            if pause > 0:
                self.wake.wait(pause)
            elif self._pool_full():
                self.wake.wait(IDLE_POLL_SECONDS)
        self.wake.set()
        self._pool.shutdown(wait=True)

    def _pool_full(self) -> bool:
        with self._lock:
            return sum(self._in_flight.values()) >= self.capacity

    def _listen(self, stop: threading.Event) -> None:
        listen(
            self.settings.require_database_url(),
            WEBHOOK_NOTIFY_CHANNEL,
            stop,
            lambda _payload: self.wake.set(),
            # Deliveries written while nothing listened woke nobody: look for them now.
            on_listening=self.wake.set,
            name="webhook listener",
            reconnect_delay=RECONNECT_DELAY_SECONDS,
        )
        self.wake.set()


def run_dispatcher(settings: Settings, stop: threading.Event) -> threading.Thread:
    """Start a dispatcher on its own engine in a background thread of this process."""
    from ledger.db import make_engine

    # Every sender records its own result: up to one connection per pool thread.
    engine = make_engine(
        settings.require_database_url(),
        pool_size=min(8, settings.webhook_concurrency),
        max_overflow=settings.webhook_concurrency,
    )
    dispatcher = WebhookDispatcher(settings, engine)
    thread = threading.Thread(
        target=dispatcher.run, args=(stop,), name="tally-webhook-dispatcher", daemon=True
    )
    thread.start()
    return thread
