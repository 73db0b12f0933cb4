"""Publishing apply tasks, always after the transaction row is committed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from worker.celery_app import APPLY_TASK, make_celery

log = logging.getLogger(__name__)


class Publisher:
    """Sends transaction ids to the workers; a failed publish is logged, never raised."""

    def __init__(self, broker_url: str, queue: str = "tally") -> None:
        self.broker_url = broker_url
        self.queue = queue
        self._celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.broker_url, self.queue)
        return self._celery

    def publish(self, transaction_ids: Sequence[str]) -> bool:
        """Enqueue one task for these ids; False if the broker could not take it.

        The caller has committed the rows already, so a False only delays them: the relay
        re-publishes transactions left queued.
        """
        if not transaction_ids:
            return True
        try:
            self.celery.send_task(APPLY_TASK, args=[list(transaction_ids)])
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
