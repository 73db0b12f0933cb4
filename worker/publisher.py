"""Publishing apply tasks, always after the transaction row is committed."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence

from celery import Celery

from worker.celery_app import APPLY_TASK, PUBLISH_CONFIRM_TIMEOUT_SECONDS, make_celery

log = logging.getLogger(__name__)


class Publisher:
    """Sends transaction ids to the workers; a failed publish is logged, never raised.

    With a `linger` (seconds), a background thread sends at most one message per linger
    (or per `max_ids` ids): under load, one message carries many ids instead of one each,
    which spares the broker and the workers a per-message cost per transaction, while ids
    that come one at a time are each sent at once. Ids lost on the way (a crash while
    they wait) stay queued in the database, where the relay finds them.
    """

    def __init__(
        self, broker_url: str, queue: str = "tally", *, linger: float = 0.0, max_ids: int = 200
    ) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.linger = linger
        self.max_ids = max(1, max_ids)
        self._celery: Celery | None = None
        self._pending: list[str] = []
        self._wakeup = threading.Condition()
        self._flusher_pid = -1

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.broker_url, self.queue)
        return self._celery

    def publish(self, transaction_ids: Sequence[str]) -> bool:
        """Enqueue these ids, one task per `max_ids` of them; False if the broker could not take
        them. Lingering, the ids go to the flusher thread and the answer is always True.

        The caller has committed the rows already, so a False only delays them: the relay
        re-publishes transactions left queued.
        """
        if not transaction_ids:
            return True
        if self.linger > 0:
            with self._wakeup:
                self._ensure_flusher()
                self._pending.extend(transaction_ids)
                self._wakeup.notify()
            return True
        return self._send_in_chunks(transaction_ids)

    def flush(self) -> None:
        """Send whatever is waiting now (at exit, so a clean shutdown strands nothing)."""
        with self._wakeup:
            ids, self._pending = self._pending, []
        self._send_in_chunks(ids)

    def _ensure_flusher(self) -> None:
        # Per process: a forked child (gunicorn worker) does not inherit the parent's thread.
        if self._flusher_pid != os.getpid():
            self._flusher_pid = os.getpid()
            self._pending = []
            threading.Thread(
                target=self._flush_forever, name="tally-publisher", daemon=True
            ).start()
            atexit.register(self.flush)

    def _flush_forever(self) -> None:
        # At most one message per `linger`, unless the last one carried a single id: ids
        # that come one at a time (a quiet spell, or a client waiting for each transaction
        # before the next) wait for nothing; once ids come faster than messages go, a
        # message carries what one linger gathered.
        last_sent = -float("inf")
        last_size = 0
        while True:
            with self._wakeup:
                while not self._pending:
                    self._wakeup.wait()
                while last_size > 1 and len(self._pending) < self.max_ids:
                    remaining = last_sent + self.linger - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.wait(remaining)
                ids, self._pending = self._pending, []
            last_sent = time.monotonic()
            last_size = len(ids)
            self._send_in_chunks(ids)

    def _send_in_chunks(self, transaction_ids: Sequence[str]) -> bool:
        # One message per worker batch at most: a worker applies what one message carries.
        sent = True
        for start in range(0, len(transaction_ids), self.max_ids):
            sent = self._send(transaction_ids[start : start + self.max_ids]) and sent
        return sent

    def _send(self, transaction_ids: Sequence[str]) -> bool:
        try:
            # The confirm wait is RabbitMQ's (Redis has none): bounded, so a broker that
            # takes the message but never confirms it cannot hold the caller.
            self.celery.send_task(
                APPLY_TASK,
                args=[list(transaction_ids)],
                confirm_timeout=PUBLISH_CONFIRM_TIMEOUT_SECONDS,
            )
        except Exception as error:  # any broker failure: the relay is the safety net
            log.warning("publish of %d transactions failed: %s", len(transaction_ids), error)
            return False
        return True

    def ping(self) -> bool:
        """Whether the broker accepts a connection now."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return False
        return True
