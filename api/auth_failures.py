"""Failed authentications per client address, counted in this API process.

A flood of made-up keys must not reach PostgreSQL: once an address has failed
TALLY_AUTH_FAILURES_PER_MINUTE times in a minute (a window aligned to the clock), its
requests are answered 429 before any key is looked up. The count stays in the process, with
no Redis round trip, because the point is to be cheap under a flood; with N API processes
an address may fail up to N times the limit in a minute before every process refuses it.
The address is the client's as the trusted proxies name it (TALLY_TRUSTED_PROXIES).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from api.rate_limits import Decision, Policy

POLICY_NAME = "auth-failures"
WINDOW_SECONDS = 60
# Addresses remembered per window; past it the oldest is forgotten, so a flood from many
# addresses costs bounded memory.
MAX_ADDRESSES = 100_000


class AuthFailures:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.time) -> None:
        self.policy = Policy(POLICY_NAME, per_minute, WINDOW_SECONDS)
        self._clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    def check(self, address: str) -> Decision:
        """Whether the address may still try (a look: nothing is counted)."""
        return self._add(address, 0)

    def count(self, address: str) -> Decision:
        """Count one failed authentication of the address."""
        return self._add(address, 1)

    def _add(self, address: str, cost: int) -> Decision:
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            failed = self._counts.get(address, 0) + cost
            if cost:
                if address not in self._counts and len(self._counts) >= MAX_ADDRESSES:
                    del self._counts[next(iter(self._counts))]
                self._counts[address] = failed
        quota = self.policy.quota
        return Decision(self.policy, failed < quota, max(0, quota - failed), reset)
