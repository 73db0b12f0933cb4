"""The journal's hash chains and the seals' Merkle roots: pure functions anyone can
recompute from exported rows (docs/design.md#tamper-evidence).

An entry's hash is SHA-256(previous hash of the same account ‖ canonical fields), the
previous hash being empty (zero bytes) for an account's first chained entry. The
canonical fields are, joined by "|" and encoded as UTF-8:

    tenant_id | transaction_id | account_id | amount | balance_after | account_version
    | effective_at

UUIDs in their lowercase hyphenated form, integers in decimal (a leading "-" when
negative), `effective_at` as whole microseconds since 1970-01-01T00:00:00Z.

A seal's root is the Merkle root of its accounts' chain heads, ordered by account id:
each level hashes adjacent pairs, SHA-256(left ‖ right); a level with an odd count
carries its last node up unchanged. The root of no heads is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENESIS = b""


def utc_microseconds(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical_fields(
    tenant_id: uuid.UUID,
    transaction_id: uuid.UUID,
    account_id: int,
    amount: int,
    balance_after: int,
    account_version: int,
    effective_at: datetime,
) -> bytes:
    """The entry's fields in the documented byte encoding."""
    return (
        f"{tenant_id}|{transaction_id}|{account_id}|{amount}|{balance_after}"
        f"|{account_version}|{utc_microseconds(effective_at)}"
    ).encode()


def entry_hash(
    previous: bytes | None,
    tenant_id: uuid.UUID,
    transaction_id: uuid.UUID,
    account_id: int,
    amount: int,
    balance_after: int,
    account_version: int,
    effective_at: datetime,
) -> bytes:
    """SHA-256(previous ‖ canonical fields); `previous` None or empty starts a chain."""
    fields = canonical_fields(
        tenant_id, transaction_id, account_id, amount, balance_after, account_version, effective_at
    )
    return hashlib.sha256((previous or GENESIS) + fields).digest()


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The Merkle root of `leaves` in the given order (odd levels carry the last node up)."""
    level = list(leaves)
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def chain_entries(
    heads: dict[int, bytes | None],
    rows: Iterable[tuple[uuid.UUID, uuid.UUID, int, int, int, int, datetime | None]],
    now: datetime,
) -> list[bytes]:
    """The hashes of a batch's entry rows (tenant, transaction, account, amount, balance
    after, version, effective at or None for `now`), chained in order from each account's
    head in `heads`, which moves to each account's last hash."""
    hashes = []
    for tenant_id, transaction_id, account_id, amount, balance, version, effective in rows:
        digest = entry_hash(
            heads.get(account_id),
            tenant_id,
            transaction_id,
            account_id,
            amount,
            balance,
            version,
            effective or now,
        )
        heads[account_id] = digest
        hashes.append(digest)
    return hashes
