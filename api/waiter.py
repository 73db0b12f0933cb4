"""Long-polling without polling: one LISTEN connection per process wakes waiting requests.

Workers `NOTIFY tally_transactions` with the ids of transactions they finished, in the
same commit. A request that waits registers first, then reads the status, then sleeps
until a notification names its id or its time is up: no request thread polls the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ledger.events import NOTIFY_CHANNEL
from ledger.notifications import listen

LISTEN_START_SECONDS = 5.0


class TransactionWaiter:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._events: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def wait_until(self, transaction_id: str, timeout: float, is_final: Callable[[], bool]) -> bool:
        """Block until `is_final()` holds or `timeout` seconds pass; returns the last answer."""
        deadline = time.monotonic() + timeout
        event = threading.Event()
        self._ensure_listening(min(timeout, LISTEN_START_SECONDS))
        with self._lock:
            self._events.setdefault(transaction_id, set()).add(event)
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
            with self._lock:
                waiting = self._events.get(transaction_id)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._events[transaction_id]

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
