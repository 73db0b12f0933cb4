"""The relay: re-publishes transactions left queued, so nothing accepted is ever stranded,
expires holds whose time has come, and seals the journal's hash chains of tenants with new
entries (ledger/seals.py).

A publish can fail after the commit, a broker can lose a message, a worker can be killed
holding one (Redis would hold it for its visibility timeout, an hour). The database is
the queue of record: whatever is still `queued` after a short age is published again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.holds import expire_due_holds
from ledger.queue import republish_stale_transactions
from ledger.seals import Seal, read_heads, record_seal, tenants_to_seal
from worker.publisher import Publisher

log = logging.getLogger(__name__)

HOLDS_PER_COMMIT = 500


def relay_once(engine: Engine, publisher: Publisher, age_seconds: float) -> int:
    """Publish the transactions queued for longer than `age_seconds`; how many."""
    with unit_of_work(engine, publish=publisher.publish) as work:
        return republish_stale_transactions(work, age_seconds)


def expire_holds_once(engine: Engine, batch_size: int = HOLDS_PER_COMMIT) -> int:
    """Release every hold past its expiry, `batch_size` to a commit; how many."""
    expired = 0
    while True:
        with unit_of_work(engine) as work:
            count = expire_due_holds(work, batch_size)
        expired += count
        if count < batch_size:
            break
    if expired:
        log.info("expired %d holds", expired)
    return expired


def seal_once(engine: Engine, tenant_id: uuid.UUID | None = None) -> list[Seal]:
    """Seal every tenant (or the one given) with chained entries since its last seal, one
    commit per tenant; the seals taken."""
    with unit_of_work(engine) as work:
        tenants = tenants_to_seal(work.connection, tenant_id)
    seals = []
    for tenant, sealed_through in tenants:
        # Two commits: the tenant's batches wait on the first only, not on the root.
        with unit_of_work(engine) as work:
            heads = read_heads(work.connection, tenant)
        if heads is None or heads.through == sealed_through:
            continue  # no entry since its last seal (a hold or an administrative change)
        with unit_of_work(engine) as work:
            seals.append(record_seal(work.connection, tenant, heads))
    if seals:
        log.info("sealed %d tenants", len(seals))
    return seals


def at_most_every(
    interval: float, job: Callable[[], object], clock: Callable[[], float] = time.monotonic
) -> Callable[[], object]:
    """`job`, run only when `interval` seconds have passed since it last ran (or never)."""
    last: list[float] = []

    def maybe() -> object:
        now = clock()
        if last and now - last[0] < interval:
            return None
        last[:] = [now]
        return job()

    maybe.__name__ = getattr(job, "__name__", "job")
    return maybe


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
