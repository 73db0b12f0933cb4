"""Celery tasks: a few lines each, taking ids, calling the ledger."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import OrderedDict

from celery import Celery
from sqlalchemy import Engine

from config.settings import Settings
from ledger.db import make_engine
from ledger.posting import BatchResult, post_transactions
from ledger.vocabulary import TransactionStatus
from worker.celery_app import APPLY_TASK

log = logging.getLogger(__name__)

# Ids this process saw finished: a redelivered message for them costs no database trip.
FINISHED_MEMORY = 100_000
# A batch that had to leave rows queued (ledger/posting.py, in_order) looks again this many
# times, after 5, 10, 20, ... ms.
DEFERRED_ROUNDS = 5
DEFERRED_BACKOFF_SECONDS = 0.005


def make_worker_engine(database_url: str) -> Engine:
    """The engine a worker process posts with."""
    return make_engine(database_url, pool_size=2, max_overflow=2)


class _ProcessState:
    """Per-process resources: prefork children must not share their parent's connections."""

    def __init__(self) -> None:
        self.pid = -1
        self.engine: Engine | None = None
        self.finished: OrderedDict[uuid.UUID, None] = OrderedDict()

    def engine_for(self, settings: Settings) -> Engine:
        if self.engine is None or self.pid != os.getpid():
            self.pid = os.getpid()
            self.engine = make_worker_engine(settings.require_database_url())
            self.finished.clear()
        return self.engine

    def remember(self, result: BatchResult) -> None:
        for outcome in result.outcomes:
            # Only final outcomes: an operator may re-queue a failed transaction, and its
            # next message must reach the ledger.
            if outcome.status != TransactionStatus.FAILED:
                self.finished[outcome.transaction_id] = None
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)


_state = _ProcessState()


def _parse_ids(raw_ids: list[str]) -> list[uuid.UUID]:
    ids = []
    for raw in raw_ids:
        try:
            ids.append(uuid.UUID(str(raw)))
        except ValueError:
            log.error("dropping malformed transaction id %r", raw)
    return ids


def apply_transactions(settings: Settings, raw_ids: list[str]) -> BatchResult:
    """Apply these queued transactions, topping the batch up with the oldest queued others."""
    engine = _state.engine_for(settings)
    ids = [i for i in _parse_ids(raw_ids) if i not in _state.finished]
    if not ids:
        return BatchResult()
    result = post_transactions(
        engine,
        ids,
        fill_to=max(settings.batch_size, len(ids)),
        max_attempts=settings.max_apply_attempts,
        in_order=True,
    )
    _state.remember(result)
    # Deferred rows wait for another worker's batch to commit: look again shortly, rather
    # than leave them to the relay's next round.
    for round_number in range(DEFERRED_ROUNDS):
        if not result.deferred:
            break
        time.sleep(DEFERRED_BACKOFF_SECONDS * 2**round_number)
        result = post_transactions(
            engine,
            [],
            fill_to=settings.batch_size,
            max_attempts=settings.max_apply_attempts,
            in_order=True,
        )
        _state.remember(result)
    return result


def register_tasks(app: Celery, settings: Settings) -> None:
    """Bind the tasks to a Celery app."""

    @app.task(name=APPLY_TASK)
    def apply_transactions_task(transaction_ids: list[str]) -> None:
        apply_transactions(settings, transaction_ids)
