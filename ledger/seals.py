"""Seals: a tenant's Merkle root over its accounts' chain heads (ledger/chains.py), stored
with the highest entry id it covers, so that an auditor holding a seal can later check
that nothing the seal covers was changed (docs/design.md#tamper-evidence).

Reading the heads takes the tenant's close lock exclusively (the lock every posting batch
holds shared, ledger/posting.py): batches in flight for the tenant commit first, and the
read sees exactly the entries up to its `entries_through`. The tenant's batches wait only
for that read; the root is computed and stored after its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.chains import merkle_root
from ledger.pagination import decode_cursor, encode_cursor
from ledger.periods import LOCK_TENANT_CLOSE

# One statement, one snapshot: the heads and the last entry id agree.
# One statement, one snapshot: the heads and the last entry id agree. The tenant's last
# entry can be found walking the primary key back from the newest: a tenant is sealed
# just after it wrote. `read_at` is read under the lock: every batch committed before it moved
# its accounts (`updated_at`, the batch's time) before it, every later batch after it.
READ_HEADS = text(
    """
    SELECT (SELECT id FROM entries WHERE tenant_id = :tenant_id
            ORDER BY id DESC LIMIT 1) AS through,
           (SELECT coalesce(array_agg(last_hash ORDER BY id), '{}') FROM accounts
            WHERE tenant_id = :tenant_id AND last_hash IS NOT NULL) AS heads,
           clock_timestamp() AS read_at
    """
)
INSERT_SEAL = text(
    """
    INSERT INTO seals (tenant_id, sealed_at, entries_through, account_count, root)
    VALUES (:tenant_id, :read_at, :through, :count, :root)
    RETURNING id, tenant_id, sealed_at, entries_through, account_count, root
    """
)
# Tenants with a chained account moved since their last seal read its heads (holds and
# wallet administration move accounts too: `seal_once` then finds no new entry). Reads
# the accounts, never the whole journal.
TENANTS_TO_SEAL = text(
    """
    SELECT t.id, last.entries_through FROM tenants t
    LEFT JOIN LATERAL (
        SELECT sealed_at, entries_through FROM seals s
        WHERE s.tenant_id = t.id ORDER BY s.id DESC LIMIT 1
    ) last ON true
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR t.id = CAST(:tenant_id AS uuid))
      AND EXISTS (
        SELECT 1 FROM accounts a
        WHERE a.tenant_id = t.id AND a.last_hash IS NOT NULL
          AND (last.sealed_at IS NULL OR a.updated_at >= last.sealed_at)
      )
    ORDER BY t.id
    """
)
SEALS_PAGE = text(
    """
    SELECT id, tenant_id, sealed_at, entries_through, account_count, root FROM seals
    WHERE tenant_id = :tenant_id AND (CAST(:before AS bigint) IS NULL OR id < :before)
    ORDER BY id DESC
    LIMIT :limit
    """
)


@dataclass(frozen=True)
class Seal:
    id: int
    tenant_id: uuid.UUID
    sealed_at: datetime
    entries_through: int
    account_count: int
    root: bytes

    def view(self) -> dict[str, Any]:
        """The seal as the API and the CLI show it (the root in hexadecimal)."""
        return {
            "id": self.id,
            "tenant_id": str(self.tenant_id),
            "sealed_at": self.sealed_at.isoformat(),
            "entries_through": self.entries_through,
            "account_count": self.account_count,
            "root": self.root.hex(),
        }


@dataclass(frozen=True)
class Heads:
    """A tenant's chain heads, ordered by account id, as of entry `through`."""

    through: int
    heads: list[bytes]
    read_at: datetime


def read_heads(conn: Connection, tenant_id: uuid.UUID) -> Heads | None:
    """The tenant's chain heads once its batches in flight have committed; None when it
    has no chained entry. Holds the tenant's close lock until the caller's commit: commit
    soon (`seal_once` in worker/relay.py computes the root after)."""
    conn.execute(LOCK_TENANT_CLOSE, {"tenant_id": str(tenant_id)})
    row = conn.execute(READ_HEADS, {"tenant_id": tenant_id}).one()
    heads = [bytes(head) for head in row.heads]
    if row.through is None or not heads:
        return None
    return Heads(row.through, heads, row.read_at)


def record_seal(conn: Connection, tenant_id: uuid.UUID, heads: Heads) -> Seal:
    """Store the seal of `heads`: their Merkle root (ledger/chains.py)."""
    sealed = conn.execute(
        INSERT_SEAL,
        {
            "tenant_id": tenant_id,
            "through": heads.through,
            "read_at": heads.read_at,
            "count": len(heads.heads),
            "root": merkle_root(heads.heads),
        },
    ).one()
    return Seal(**sealed._mapping)


def seal_tenant(conn: Connection, tenant_id: uuid.UUID) -> Seal | None:
    """Seal the tenant's chains as they stand, in the caller's transaction."""
    heads = read_heads(conn, tenant_id)
    return record_seal(conn, tenant_id, heads) if heads is not None else None


def tenants_to_seal(
    conn: Connection, tenant_id: uuid.UUID | None = None
) -> list[tuple[uuid.UUID, int | None]]:
    """The tenants (or the one given) whose chained accounts moved since their last seal,
    each with the last entry that seal covers (None: never sealed)."""
    rows = conn.execute(TENANTS_TO_SEAL, {"tenant_id": tenant_id})
    return [(row.id, row.entries_through) for row in rows]


def seals_page(
    conn: Connection, tenant_id: uuid.UUID, limit: int, before: int | None = None
) -> list[Seal]:
    """The tenant's seals newest first, those with an id below `before` when given."""
    rows = conn.execute(SEALS_PAGE, {"tenant_id": tenant_id, "before": before, "limit": limit})
    return [Seal(**row._mapping) for row in rows]


def list_seals(
    conn: Connection, tenant_id: uuid.UUID, *, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """A page of the tenant's seals, newest first (keyset on the id), for the API."""
    before = decode_cursor(cursor, int) if cursor else None
    seals = seals_page(conn, tenant_id, limit + 1, before)
    page = seals[:limit]
    return {
        "seals": [seal.view() for seal in page],
        "next_cursor": encode_cursor(str(page[-1].id)) if len(seals) > limit else None,
    }
