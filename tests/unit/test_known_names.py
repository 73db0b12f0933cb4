"""The per-process memory of names that exist for good (ledger/known_names.py)."""

from __future__ import annotations

import uuid

from ledger.known_names import KnownNames

ACME, GLOBEX = uuid.UUID(int=1), uuid.UUID(int=2)


def test_a_name_seen_to_exist_is_not_asked_about_again_for_that_tenant_only() -> None:
    known = KnownNames()
    assert known.unseen(ACME, {"@fees", "@tax"}) == {"@fees", "@tax"}

    known.remember(ACME, {"@fees"})

    assert known.unseen(ACME, {"@fees", "@tax"}) == {"@tax"}
    assert known.unseen(GLOBEX, {"@fees"}) == {"@fees"}


def test_past_its_bound_the_memory_starts_over() -> None:
    known = KnownNames(max_tenants=1)
    known.remember(ACME, {"EUR"})

    known.remember(GLOBEX, {"PTS"})

    assert known.unseen(ACME, {"EUR"}) == {"EUR"}
    assert known.unseen(GLOBEX, {"PTS"}) == set()
