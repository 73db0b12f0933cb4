"""Row-level security must not cost the ledger-time reads their index ranges: under the API
role, PostgreSQL bounds an index scan only by quals it knows cannot leak rows, so each read
in time is planned there and must range over `effective_at`, not walk an account's history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, TextClause, text

from ledger.db import tenant_scope
from ledger.ledger_time import BALANCE_THROUGH, BALANCES_AS_OF
from ledger.queries import wallet_account_id
from ledger.statements import ENTRIES
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run

NOW = datetime.now(UTC)


def plan(engine: Engine, tenant: TenantFixture, query: TextClause, params: dict) -> str:
    """The API role's plan for `query`, sequential scans ruled out so that the few rows of a
    test table cannot hide which quals an index scan may use."""
    with tenant_scope(tenant.id), engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        rows = conn.execute(text(f"EXPLAIN {query.text}"), params).scalars()
        return "\n".join(rows)


def entries_index_conditions(explained: str) -> list[str]:
    """The index conditions of the scans on `entries` in a plan."""
    lines = explained.splitlines()
    conditions = []
    for number, line in enumerate(lines):
        if "Index Cond" in line and any(
            " on entries e" in earlier or " on ix_entries" in earlier or " on uq_entries" in earlier
            for earlier in lines[max(0, number - 2) : number]
        ):
            conditions.append(line)
    return conditions


@pytest.mark.parametrize(
    "name",
    ["balances as of", "balance through an entry", "statement entries"],
)
def test_the_api_roles_reads_in_time_range_over_effective_at(
    make_app, engine: Engine, tenant: TenantFixture, name: str
) -> None:
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    with engine.connect() as conn:
        account = wallet_account_id(conn, tenant.id, "alice", "EUR")
    api_engine = make_app().extensions["tally"].engine
    a_day_ago = NOW - timedelta(days=1)
    query, params = {
        "balances as of": (
            BALANCES_AS_OF,
            {"ids": [account], "as_of": NOW, "known_at": None},
        ),
        "balance through an entry": (
            BALANCE_THROUGH,
            {"id": account, "at": NOW, "entry_id": 1, "known_at": None},
        ),
        "statement entries": (
            ENTRIES,
            {
                "id": account, "start": a_day_ago, "end": NOW, "after_at": a_day_ago,
                "after_id": 0, "known_at": None, "limit": 100,
            },
        ),
    }[name]  # fmt: skip

    explained = plan(api_engine, tenant, query, params)

    # Both ends of the range bound the scan (and a statement page's position its start);
    # none is left to a filter over the history.
    conditions = " ".join(entries_index_conditions(explained))
    assert "(effective_at > " in conditions, explained
    assert "(effective_at <= " in conditions, explained
    if name == "statement entries":
        assert "(effective_at >= " in conditions, explained
