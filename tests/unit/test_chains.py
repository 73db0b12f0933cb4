"""The chain hash and the seals' Merkle root follow their documented encoding."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

from ledger.chains import canonical_fields, entry_hash, merkle_root, utc_microseconds

TENANT = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
TXN = uuid.UUID("00000000-0000-0000-0000-0000000000bb")
WHEN = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_canonical_fields_are_the_documented_string():
    encoded = canonical_fields(TENANT, TXN, 7, -150, 850, 3, WHEN)

    assert encoded == (
        b"00000000-0000-0000-0000-0000000000aa|00000000-0000-0000-0000-0000000000bb"
        b"|7|-150|850|3|1767323045000006"
    )


def test_microseconds_do_not_depend_on_the_time_zone_of_the_value():
    elsewhere = WHEN.astimezone(timezone(timedelta(hours=5, minutes=30)))

    assert utc_microseconds(elsewhere) == utc_microseconds(WHEN) == 1767323045000006


def test_the_first_hash_of_a_chain_has_no_predecessor_and_the_next_includes_it():
    first = entry_hash(None, TENANT, TXN, 7, 100, 100, 1, WHEN)
    second = entry_hash(first, TENANT, TXN, 7, -30, 70, 2, WHEN)

    assert first == sha(canonical_fields(TENANT, TXN, 7, 100, 100, 1, WHEN))
    assert second == sha(first + canonical_fields(TENANT, TXN, 7, -30, 70, 2, WHEN))
    assert entry_hash(b"", TENANT, TXN, 7, 100, 100, 1, WHEN) == first


def test_any_changed_field_changes_the_hash():
    base = entry_hash(None, TENANT, TXN, 7, 100, 100, 1, WHEN)

    assert entry_hash(None, TENANT, TXN, 7, 101, 100, 1, WHEN) != base
    assert entry_hash(None, TENANT, TXN, 7, 100, 100, 2, WHEN) != base
    assert entry_hash(None, TENANT, TXN, 7, 100, 100, 1, WHEN + timedelta(microseconds=1)) != base


def test_merkle_root_pairs_leaves_and_carries_an_odd_one_up():
    a, b, c = sha(b"a"), sha(b"b"), sha(b"c")

    assert merkle_root([]) == sha(b"")
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == sha(a + b)
    assert merkle_root([a, b, c]) == sha(sha(a + b) + c)
    assert merkle_root([c, b, a]) != merkle_root([a, b, c])
