"""Concurrent single submissions of one API key, recorded together in one commit.

A submission that arrives while no batch of its key is being recorded is recorded at
once, alone: at low load nothing waits. Submissions that arrive meanwhile queue up; when
the batch in flight has committed, the first of them records every one queued by then in
one statement and one commit (group commit, as PostgreSQL does for WAL). Under load this
divides the per-statement and per-commit cost, in the API and in PostgreSQL, by the batch
size; each request still gets its own answer (new, replayed or its own error) from the one
intake service, and a 202 still means its row is committed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from ledger.intake import Result
from ledger.transaction_request import TransactionRequest

# One batch: one INSERT of at most this many rows.
MAX_COMBINED = 100

AcceptBatch = Callable[[Sequence[TransactionRequest]], list[Result]]


@dataclass
class _Slot:
    request: TransactionRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None
    # Set when this slot's thread must record the next batch itself.
    leads: bool = False


@dataclass
class _Group:
    pending: list[_Slot] = field(default_factory=list)
    busy: bool = False


class SubmissionCombiner:
    def __init__(self, max_combined: int = MAX_COMBINED) -> None:
        self.max_combined = max_combined
        self._groups: dict[Hashable, _Group] = {}
        self._lock = threading.Lock()

    def accept(
        self, group: tuple[uuid.UUID, uuid.UUID], request: TransactionRequest, run: AcceptBatch
    ) -> Result:
        """Accept one request with whatever else its group (tenant and key) has queued; `run`
        accepts a batch in one unit of work (the caller's thread may be asked to run it)."""
        slot = _Slot(request)
        with self._lock:
            state = self._groups.setdefault(group, _Group())
            state.pending.append(slot)
            if not state.busy:
                state.busy = slot.leads = True
        if not slot.leads:
            slot.done.wait()
        if slot.leads:
            self._lead(group, run)
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    def _lead(self, group: Hashable, run: AcceptBatch) -> None:
        with self._lock:
            state = self._groups[group]
            batch, state.pending = (
                state.pending[: self.max_combined],
                state.pending[self.max_combined :],
            )
        try:
            results = run([slot.request for slot in batch])
        except BaseException as error:
            for slot in batch:
                slot.error = error
        else:
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        with self._lock:
            # Hand over: the first one queued meanwhile records the next batch, so no
            # request records more than one batch.
            if state.pending:
                state.pending[0].leads = True
                state.pending[0].done.set()
            else:
                state.busy = False
                del self._groups[group]
        for slot in batch:
            slot.leads = False
            slot.done.set()
