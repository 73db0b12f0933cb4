"""Rate limits per API key, shared by every API process through the `limits` storage.

Each key may make its tenant's `rate_limit_per_second` requests (TALLY_RATE_LIMIT_PER_SECOND
when the tenant has none) in each one-second window; the manual webhook routes (test
event, recover) have a tighter budget of their own, per key. Windows are aligned to the
clock, so every API process counts into the same Redis key with one round trip (INCRBY;
the window's first request also sets its expiry) and the answer's headers are exact: the `RateLimit` and `RateLimit-Policy`
fields of the IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers-10).

With a Redis URL (TALLY_RATE_LIMIT_STORAGE_URL, or a `redis://` BROKER_URL) the counts are
shared; without one (a RabbitMQ-only deployment) each API process counts on its own, so a
key's effective limit is the per-process limit times the number of API processes. When
the storage does not answer, requests are let through: rate limiting protects capacity
and must not itself take the API down.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string

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


class RateLimiter:
    def __init__(self, url: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self.shared = url is not None
        storage = storage_from_string(url) if url else MemoryStorage()
        assert isinstance(storage, Storage), "a synchronous storage"
        self.storage = storage
        # On Redis, a plain INCRBY (and an EXPIRE once per window) instead of limits' Lua
        # script: 80 µs of API CPU per request instead of 140.
        self._redis = storage.storage if isinstance(storage, RedisStorage) else None
        self._clock = clock

    def hit(self, policy: Policy, key_id: uuid.UUID, cost: int = 1) -> Decision:
        """Count one request of `key_id` against `policy`."""
        now = self._clock()
        window = int(now // policy.window_seconds)
        reset = max(1, math.ceil((window + 1) * policy.window_seconds - now))
        key = f"tally:rate:{policy.name}:{key_id}:{window}"
        expiry = policy.window_seconds + 1
        try:
            if self._redis is not None:
                used = int(self._redis.incrby(key, cost))
                if used == cost:  # the window's first request
                    self._redis.expire(key, expiry)
            else:
                used = self.storage.incr(key, expiry, amount=cost)
        except Exception:
            # The storage is down: let the request through rather than refuse everyone.
            log.warning("rate-limit storage unavailable; not limiting", exc_info=True)
            return Decision(policy, True, policy.quota, reset)
        return Decision(policy, used <= policy.quota, max(0, policy.quota - used), reset)
