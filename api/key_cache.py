"""API keys this process has looked up, forgotten as soon as PostgreSQL says one changed.

A trigger on `api_keys` notifies `tally_api_keys` with the key's id on every update or
delete (a revocation is an update), in the same commit. One LISTEN connection per process
evicts that key, so a revoked key stops working for reads within the notification's
latency; writes confirm the key in their own statement and so refuse it at once. While the
listener is not connected (starting, or after losing its connection) the cache is empty
and unused: every request looks its key up, as it would with no cache at all.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict

from ledger.keys import KEY_CHANGES_CHANNEL, Principal
from ledger.notifications import listen

MAX_KEYS = 10_000


class KeyCache:
    def __init__(self, database_url: str, ttl_seconds: float) -> None:
        self._url = database_url
        self._ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._by_id: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, key_hash: str) -> Principal | None:
        """The cached principal of a key, if the cache may be trusted and has it."""
        if self._ttl <= 0:
            return None
        self._ensure_listening()
        if not self._listening.is_set():
            return None
        with self._lock:
            found = self._entries.get(key_hash)
            if found is None:
                return None
            principal, expires = found
            if expires < time.monotonic():
                self._evict(key_hash)
                return None
            return principal

    def put(self, key_hash: str, principal: Principal) -> None:
        """Remember a key just looked up in the database."""
        if self._ttl <= 0 or not self._listening.is_set():
            # Not listening: a revocation now would go unheard, so nothing is cached.
            return
        with self._lock:
            self._entries[key_hash] = (principal, time.monotonic() + self._ttl)
            self._by_id[principal.key_id] = key_hash
            while len(self._entries) > MAX_KEYS:
                self._evict(next(iter(self._entries)))

    def forget(self, key_id: str) -> None:
        """Drop a key PostgreSQL said changed (its id, as the trigger sends it)."""
        try:
            parsed = uuid.UUID(key_id)
        except ValueError:
            self.clear()  # an unexpected payload: trust nothing
            return
        with self._lock:
            key_hash = self._by_id.get(parsed)
            if key_hash is not None:
                self._evict(key_hash)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_id.clear()

    def close(self) -> None:
        self._stopped.set()

    def _evict(self, key_hash: str) -> None:
        found = self._entries.pop(key_hash, None)
        if found is not None:
            self._by_id.pop(found[0].key_id, None)

    def _ensure_listening(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._listen_forever, name="tally-key-listener", daemon=True
                    )
                    self._thread.start()

    def _listen_forever(self) -> None:
        listen(
            self._url,
            KEY_CHANGES_CHANNEL,
            self._stopped,
            self.forget,
            on_listening=self._on_listening,
            on_lost=self._on_lost,
            name="API key listener",
        )

    def _on_listening(self) -> None:
        # Whatever changed while nobody listened is unknown: start from empty.
        self.clear()
        self._listening.set()

    def _on_lost(self) -> None:
        self._listening.clear()
        self.clear()
