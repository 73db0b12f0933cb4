"""Long-polling without polling: one LISTEN connection per process wakes waiting requests.

Workers `NOTIFY tally_transactions` with the ids of transactions they finished, in the
same commit. A request that waits registers first, then reads the status, then sleeps
until a notification names its id or its time is up: no request thread polls the database.
Under `tally api` the wait is parked on the server's event loop (`subscribe_async`) and
holds no thread; under a plain WSGI server (tests) it blocks its thread (`wait_until`).

Long-polls are bounded per process and per tenant (`admit`): one tenant's clients cannot
take every slot, and past the bound a `?wait` answers at once with the current state.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ledger.events import NOTIFY_CHANNEL
from ledger.notifications import listen

LISTEN_START_SECONDS = 5.0


class Wakeable(Protocol):
    def set(self) -> None: ...


class LoopEvent:
    """An asyncio.Event that the listener thread can set."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def set(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    def clear(self) -> None:
        self.event.clear()

    async def wait(self) -> None:
        await self.event.wait()


class TransactionWaiter:
    def __init__(self, database_url: str, *, per_process: int = 256, per_tenant: int = 64) -> None:
        self._url = database_url
        self.per_process = per_process
        self.per_tenant = per_tenant
        self._waiting: Counter[uuid.UUID] = Counter()
        self._events: dict[str, set[Wakeable]] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def admit(self, tenant_id: uuid.UUID) -> Callable[[], None] | None:
        """A long-poll slot for this tenant (call the result to give it back), or None when
        the process or the tenant has as many long-polls parked as it may."""
        with self._lock:
            if (
                sum(self._waiting.values()) >= self.per_process
                or self._waiting[tenant_id] >= self.per_tenant
            ):
                return None
            self._waiting[tenant_id] += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self._waiting[tenant_id] -= 1
                if self._waiting[tenant_id] <= 0:
                    del self._waiting[tenant_id]

        return release

    def parked(self) -> int:
        """Long-polls holding a slot now."""
        with self._lock:
            return sum(self._waiting.values())

    def subscribe_async(self, transaction_id: str, loop: asyncio.AbstractEventLoop) -> LoopEvent:
        """An event on `loop`, set when a notification names `transaction_id` (or when the
        listener reconnects, so that the waiter looks again)."""
        self._ensure_listening(0)
        event = LoopEvent(loop)
        self._add(transaction_id, event)
        return event

    def unsubscribe_async(self, transaction_id: str, event: LoopEvent) -> None:
        self._discard(transaction_id, event)

    def _add(self, transaction_id: str, event: Wakeable) -> None:
        with self._lock:
            self._events.setdefault(transaction_id, set()).add(event)

    def _discard(self, transaction_id: str, event: Wakeable) -> None:
        with self._lock:
            waiting = self._events.get(transaction_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[transaction_id]

    def wait_until(self, transaction_id: str, timeout: float, is_final: Callable[[], bool]) -> bool:
        """Block until `is_final()` holds or `timeout` seconds pass; returns the last answer."""
        deadline = time.monotonic() + timeout
        event = threading.Event()
        self._ensure_listening(min(timeout, LISTEN_START_SECONDS))
        self._add(transaction_id, event)
        try:
            while True:
                if is_final():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                event.wait(remaining)
                event.clear()
        finally:
            self._discard(transaction_id, event)

    def close(self) -> None:
        self._stopped.set()

    def _ensure_listening(self, timeout: float) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._listen_forever, name="tally-listener", daemon=True
                    )
                    self._thread.start()
        # Until LISTEN is active a notification could slip past us; waiters still re-check
        # the status when they wake, so a bounded wait here is enough.
        self._listening.wait(timeout)

    def _wake(self, ids: list[str] | None) -> None:
        with self._lock:
            if ids is None:
                events = [e for waiting in self._events.values() for e in waiting]
            else:
                events = [e for i in ids for e in self._events.get(i, ())]
        for event in events:
            event.set()

    def _listen_forever(self) -> None:
        listen(
            self._url,
            NOTIFY_CHANNEL,
            self._stopped,
            lambda payload: self._wake(payload.split(",")),
            on_listening=self._on_listening,
            on_lost=self._on_lost,
            name="long-poll listener",
        )

    def _on_listening(self) -> None:
        self._listening.set()
        # Anything finished while we were not listening: let every waiter re-check.
        self._wake(None)

    def _on_lost(self) -> None:
        self._listening.clear()
        self._wake(None)
