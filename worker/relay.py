"""The relay: re-publishes transactions left queued, so nothing accepted is ever stranded,
and expires holds whose time has come.

A publish can fail after the commit, a broker can lose a message, a worker can be killed
holding one (Redis would hold it for its visibility timeout, an hour). The database is
the queue of record: whatever is still `queued` after a short age is published again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.holds import expire_due_holds
from worker.publisher import Publisher

log = logging.getLogger(__name__)

PUBLISH_CHUNK = 200

# Bumping updated_at marks the row as just published: the next scan leaves it alone for
# another `age` seconds. SKIP LOCKED passes over rows a worker is applying right now.
CLAIM_STALE = text(
    """
    UPDATE transactions SET publish_count = publish_count + 1, updated_at = now()
    WHERE id IN (
        SELECT id FROM transactions
        WHERE status = 'queued' AND next_attempt_at <= now()
          AND updated_at < now() - make_interval(secs => :age)
        ORDER BY seq
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)


def relay_once(
    engine: Engine,
    publisher: Publisher,
    age_seconds: float,
    limit: int = 5000,
    chunk_size: int = PUBLISH_CHUNK,
) -> int:
    """Publish the transactions queued for longer than `age_seconds`; how many were sent."""
    with unit_of_work(engine) as conn:
        ids = [
            str(i)
            for i in conn.execute(CLAIM_STALE, {"age": age_seconds, "limit": limit}).scalars()
        ]
    sent = 0
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        if publisher.publish(chunk):
            sent += len(chunk)
    if ids:
        log.info("relay re-published %d of %d stale queued transactions", sent, len(ids))
    return sent


def expire_holds_once(engine: Engine, batch_size: int = 500) -> int:
    """Release every hold past its expiry, `batch_size` to a commit; how many."""
    expired = 0
    while True:
        with unit_of_work(engine) as conn:
            count = expire_due_holds(conn, batch_size)
        expired += count
        if count < batch_size:
            break
    if expired:
        log.info("expired %d holds", expired)
    return expired


def run_periodically(
    jobs: list[Callable[[], object]], interval: float, stop: threading.Event
) -> None:
    """Run each job every `interval` seconds until `stop` is set; a failing job is logged."""
    while not stop.is_set():
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))
        stop.wait(interval)
