"""Names that exist for good once they exist: a process remembers them per tenant.

A tenant's defined system accounts and its assets are never removed, so a name seen to
exist once exists for every later request: intake then checks a split naming `@fees` or an
exchange into `PTS` without a round trip. Only names not seen yet are asked of PostgreSQL;
a name that does not exist is never remembered, so a definition made later is found.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

# Tenants remembered per kind of name; past it, the memory starts over (a cache, not state).
MAX_TENANTS = 10_000


class KnownNames:
    def __init__(self, max_tenants: int = MAX_TENANTS) -> None:
        self._seen: dict[uuid.UUID, set[str]] = {}
        self._max_tenants = max_tenants
        self._lock = threading.Lock()

    def unseen(self, tenant_id: uuid.UUID, names: Iterable[str]) -> set[str]:
        """Those of `names` this process has not seen exist for the tenant."""
        with self._lock:
            return set(names) - self._seen.get(tenant_id, set())

    def remember(self, tenant_id: uuid.UUID, names: Iterable[str]) -> None:
        """Note that `names` exist for the tenant."""
        with self._lock:
            if tenant_id not in self._seen and len(self._seen) >= self._max_tenants:
                self._seen.clear()
            self._seen.setdefault(tenant_id, set()).update(names)
