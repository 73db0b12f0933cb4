"""Rate limits per API key, shared by every API process through Redis.

Each key may make its tenant's `rate_limit_per_second` requests (TALLY_RATE_LIMIT_PER_SECOND
when the tenant has none) in each one-second window; the manual webhook routes (test
event, recover, redeliver) have a tighter budget of their own, per key. Windows are
aligned to the clock, so every API process counts into the same Redis key, and answers
carry the `RateLimit` and `RateLimit-Policy` fields of the IETF httpapi draft
(draft-ietf-httpapi-ratelimit-headers-10).

A Redis round trip on every request halved the API's throughput at saturation (a thread
that blocks on a socket waits for the GIL to come back), so a process counts locally while
a key is below half its quota in the window, and a background thread adds the local
counts to Redis every TALLY_RATE_LIMIT_FLUSH_SECONDS (INCRBY, one pipeline for all keys).
Past half the quota every request asks Redis for the exact total: near the limit the
decision is exact, however many processes count.

With a Redis URL (TALLY_RATE_LIMIT_STORAGE_URL, or a `redis://` BROKER_URL; the client
comes from the `limits` library's Redis storage) the counts are shared; without one (a
RabbitMQ-only deployment) each API process counts on its own, so a key's effective limit
is the per-process limit times the number of API processes. When Redis does not answer,
requests are let through: rate limiting protects capacity and must not itself take the
API down.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits.storage import RedisStorage, storage_from_string

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window_seconds: int


@dataclass(frozen=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """The draft's fields: the policy, and what is left of it in this window."""
        return {
            "RateLimit-Policy": (
                f'"{self.policy.name}";q={self.policy.quota};w={self.policy.window_seconds}'
            ),
            "RateLimit": f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}',
        }


def storage_url(rate_limit_url: str | None, broker_url: str | None) -> str | None:
    """The `limits` storage URI to share counts through, if there is a Redis to use."""
    url = rate_limit_url or (
        broker_url if broker_url and broker_url.startswith(("redis", "rediss")) else None
    )
    if url and url.startswith("redis+socket://"):
        # Celery's spelling of a Unix socket (tally dev's embedded Redis) is limits' redis+unix.
        return "redis+unix://" + url.removeprefix("redis+socket://")
    return url


@dataclass
class _Count:
    """One key's window in this process: the total Redis last reported, and what this
    process has counted since."""

    expiry: int
    seen: int = 0
    pending: int = 0


# Below this share of its quota a key is counted locally; above, each request asks Redis.
LOCAL_SHARE = 0.5


class RateLimiter:
    def __init__(
        self,
        url: str | None,
        *,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = 0.02,
    ) -> None:
        self.shared = url is not None
        self._redis: Any = None
        if url is not None:
            storage = storage_from_string(url)
            if not isinstance(storage, RedisStorage):
                raise ValueError(f"rate limits are shared through Redis, not {url!r}")
            self._redis = storage.storage
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._counts: dict[str, _Count] = {}
        self._flusher: threading.Thread | None = None

    def hit(self, policy: Policy, key_id: uuid.UUID, cost: int = 1) -> Decision:
        """Count one request of `key_id` against `policy`."""
        now = self._clock()
        window = int(now // policy.window_seconds)
        reset = max(1, math.ceil((window + 1) * policy.window_seconds - now))
        key = f"tally:rate:{policy.name}:{key_id}:{window}"
        with self._lock:
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count(policy.window_seconds + 1)
            estimate = count.seen + count.pending + cost
            local = not self.shared or estimate <= policy.quota * LOCAL_SHARE
            if local:
                count.pending += cost
        if local:
            self._ensure_flusher()
            used = estimate
        else:
            total = self._exact(key, count, cost)
            if total is None:
                return Decision(policy, True, policy.quota, reset)
            used = total
        return Decision(policy, used <= policy.quota, max(0, policy.quota - used), reset)

    def flush(self) -> None:
        """Add every local count to Redis now (the background thread does it regularly)."""
        if self._redis is None:
            self._forget_old()
            return
        with self._lock:
            # Every key of the window, counted here or not: INCRBY 0 reads what the other
            # processes have added.
            batch = [(key, c, c.pending) for key, c in self._counts.items()]
            for _, count, pending in batch:
                count.pending -= pending
        if batch:
            try:
                pipe = self._redis.pipeline(transaction=False)
                for key, count, pending in batch:
                    pipe.incrby(key, pending)
                    pipe.expire(key, count.expiry)
                totals = pipe.execute()[::2]
            except Exception:
                log.warning("rate-limit storage unavailable; counting locally", exc_info=True)
                with self._lock:
                    for _, count, pending in batch:
                        count.pending += pending
                return
            with self._lock:
                for (_, count, _), total in zip(batch, totals, strict=True):
                    count.seen = max(count.seen, int(total))
        self._forget_old()

    def _exact(self, key: str, count: _Count, cost: int) -> int | None:
        """Add this request (and the process's local count) to Redis; the key's total."""
        with self._lock:
            pending, count.pending = count.pending, 0
        try:
            total = int(self._redis.incrby(key, pending + cost))
            if total == pending + cost:  # the window's first count in Redis
                self._redis.expire(key, count.expiry)
        except Exception:
            log.warning("rate-limit storage unavailable; not limiting", exc_info=True)
            with self._lock:
                count.pending += pending
            return None
        with self._lock:
            count.seen = max(count.seen, total)
        return total

    def _ensure_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_forever, name="tally-rate-limit-flusher", daemon=True
            )
        self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._flush_seconds)
            self.flush()

    def _forget_old(self) -> None:
        # Windows end; their counts go once nothing is left to flush to Redis.
        now = self._clock()
        with self._lock:
            for key in [k for k, c in self._counts.items() if not (self.shared and c.pending)]:
                window_seconds = self._counts[key].expiry - 1
                if int(key.rsplit(":", 1)[1]) < int(now // window_seconds):
                    del self._counts[key]
