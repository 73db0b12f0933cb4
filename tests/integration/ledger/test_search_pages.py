"""The console's transaction search pages through ties: transactions accepted in one
commit share their `created_at`, and the keyset position (created_at, seq) still shows each
exactly once, newest first."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.intake import accept_transactions
from ledger.search import TransactionFilter, search_transactions
from ledger.transaction_request import TransactionRequest
from tests.conftest import TenantFixture


def test_search_pages_show_each_transaction_once_across_ties(
    engine: Engine, tenant: TenantFixture
) -> None:
    batches = []
    for _ in range(2):  # two commits: ties inside each, an order between them
        requests = [
            TransactionRequest(
                type="topup", user_id="alice", asset_code="EUR", amount=1,
                reference_id=uuid.uuid4().hex,
            ).validated()
            for _ in range(5)
        ]  # fmt: skip
        with unit_of_work(engine) as work:
            accepted = accept_transactions(work, tenant.id, requests, admin=False)
        batches.append([str(result.id) for result in accepted])  # type: ignore[union-attr]

    seen: list[str] = []
    cursor = None
    with engine.connect() as conn:
        while True:
            page, cursor = search_transactions(
                conn, tenant.id, TransactionFilter(), limit=3, cursor=cursor
            )
            seen.extend(item["id"] for item in page)
            if cursor is None:
                break

    assert sorted(seen) == sorted(batches[0] + batches[1])
    assert len(seen) == len(set(seen)) == 10
    # Newest commit first; within a commit, the later-accepted first.
    assert seen == list(reversed(batches[1])) + list(reversed(batches[0]))
