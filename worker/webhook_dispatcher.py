"""The webhook dispatcher: claims due deliveries and sends them from a pool of threads.

It runs in the relay process. A claim leases deliveries in one short commit; each is then
sent by a pool thread and its result recorded in its own short commit. The database is the
queue of record: retries wait in `next_attempt_at`, and a dispatcher killed mid-send leaves
leases that expire, so its deliveries are claimed again (at-least-once, same webhook-id).

Isolation between endpoints: no endpoint may hold more than a few of the pool's threads,
and one whose last attempt failed (down, hanging, answering errors) gets only one, so a
dead or slow receiver costs one thread and one timeout at a time, never everyone's turn.
Isolation between tenants: claims take turns across tenants, and no tenant may hold more
than half the pool, so one tenant's many endpoints cannot delay every other tenant.

Whatever goes wrong while sending or recording, an attempt is recorded and the retry
schedule decides what comes next; only a database that cannot be reached at all leaves
the delivery to its lease.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from ledger.db import make_engine, unit_of_work
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
from ledger.webhooks.secrets import SecretBox
from ledger.webhooks.signing import webhook_headers
from worker.webhook_http import post_webhook

log = logging.getLogger(__name__)

# Threads one healthy endpoint may hold (at most a quarter of the pool); a failing one, one.
PER_ENDPOINT = 8
# The share of the pool's threads one tenant may hold, whatever its number of endpoints.
TENANT_SHARE = 0.5
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
        # Without keys it could sign nothing: it refuses to start (SettingsError).
        self.box = SecretBox(settings.require_webhook_secret_keys())
        self.capacity = max(1, settings.webhook_concurrency)
        self.share = max(1, min(PER_ENDPOINT, self.capacity // 4))
        self.tenant_share = max(1, int(self.capacity * TENANT_SHARE))
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._tenant_in_flight: Counter[uuid.UUID] = Counter()
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
            tenant_room = {t: self.tenant_share - n for t, n in self._tenant_in_flight.items()}
        if free <= 0:
            return 0

        def room_for(endpoint_id: uuid.UUID) -> int:
            if endpoint_id in room:
                return room[endpoint_id]
            return 1 if endpoint_id in failing else self.share

        def tenant_room_for(tenant_id: uuid.UUID) -> int:
            return tenant_room.get(tenant_id, self.tenant_share)

        with unit_of_work(self.engine) as work:
            claimed = claim_due(
                work,
                limit=free,
                room_for=room_for,
                full=[e for e, left in room.items() if left <= 0],
                tenant_room_for=tenant_room_for,
                full_tenants=[t for t, left in tenant_room.items() if left <= 0],
                lease_seconds=self.lease_seconds,
                box=self.box,
            )
        with self._lock:
            for delivery in claimed:
                self._in_flight[delivery.endpoint_id] += 1
                self._tenant_in_flight[delivery.tenant_id] += 1
        for delivery in claimed:
            self._pool.submit(self._deliver, delivery)
        return len(claimed)

    def _deliver(self, delivery: ClaimedDelivery) -> None:
        succeeded = False
        try:
            if not delivery.enabled:
                with unit_of_work(self.engine) as work:
                    fail_unsendable(work, delivery, "endpoint disabled")
                return
            result = self._attempt(delivery)
            succeeded = result.succeeded
            self._store(delivery, result)
        except Exception:
            # Only the database can fail here: the lease expires and the delivery is claimed
            # again, so nothing is lost.
            log.exception("webhook delivery %s: recording the attempt failed", delivery.id)
        finally:
            with self._lock:
                self._release(self._in_flight, delivery.endpoint_id)
                self._release(self._tenant_in_flight, delivery.tenant_id)
                if succeeded:
                    self._failing.discard(delivery.endpoint_id)
                else:
                    self._failing.add(delivery.endpoint_id)
            self.wake.set()

    @staticmethod
    def _release(in_flight: Counter[uuid.UUID], key: uuid.UUID) -> None:
        in_flight[key] -= 1
        if in_flight[key] <= 0:
            del in_flight[key]

    def _attempt(self, delivery: ClaimedDelivery) -> AttemptResult:
        """Sign and send one attempt; an exception is the attempt's error, never raised."""
        attempted_at = datetime.now(UTC)
        started = time.monotonic()
        if delivery.unsignable is not None:
            # Sealed under a key this dispatcher lacks: nothing is sent, and the schedule
            # retries, so restoring the key lets the delivery through.
            log.error("webhook delivery %s: %s", delivery.id, delivery.unsignable)
            return AttemptResult(attempted_at, 0, error=delivery.unsignable)
        try:
            headers = webhook_headers(
                delivery.message_id, delivery.secrets, delivery.body, int(time.time())
            )
            return self.send(
                delivery.url,
                delivery.body,
                headers,
                timeout=self.settings.webhook_timeout_seconds,
                allow_private=self.settings.webhook_allow_private_targets,
            )
        except Exception as error:
            log.exception("webhook delivery %s: sending failed unexpectedly", delivery.id)
            return AttemptResult(
                attempted_at,
                int((time.monotonic() - started) * 1000),
                error=f"internal error: {type(error).__name__}: {error}".rstrip(": "),
            )

    def _store(self, delivery: ClaimedDelivery, result: AttemptResult) -> None:
        """Record the attempt; if that fails, record it again without what the receiver said."""
        schedule = self.settings.webhook_retry_schedule
        try:
            with unit_of_work(self.engine) as work:
                record_attempt(work, delivery, result, schedule)
            return
        except Exception as error:
            log.exception("webhook delivery %s: recording the answer failed", delivery.id)
            # The status code still counts (a 2xx was delivered, and must not be sent again);
            # the body and reason, which may be what failed, are dropped.
            bare = AttemptResult(
                result.attempted_at,
                result.latency_ms,
                status_code=result.status_code,
                error=f"the answer could not be recorded: {type(error).__name__}",
                retry_after_seconds=result.retry_after_seconds,
            )
        with unit_of_work(self.engine) as work:
            record_attempt(work, delivery, bare, schedule)

    def _pause(self) -> float:
        with self.engine.connect() as conn:
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
