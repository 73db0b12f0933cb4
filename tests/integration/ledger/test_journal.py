"""The journal is append-only, and PostgreSQL itself refuses to rewrite it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tests.integration.ledger.helpers import run

STATEMENTS = {
    "update": "UPDATE entries SET amount = amount * 2 WHERE transaction_id = :id",
    "update balance_after": "UPDATE entries SET balance_after = 0 WHERE transaction_id = :id",
    "delete": "DELETE FROM entries WHERE transaction_id = :id",
    "truncate": "TRUNCATE entries",
}


def entries_of(engine: Engine, transaction_id: str) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT amount, balance_after FROM entries WHERE transaction_id = :id"
                    " ORDER BY amount"
                ),
                {"id": transaction_id},
            )
        ]


@pytest.mark.parametrize("statement", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_the_database_refuses_to_change_journal_entries(engine, tenant, statement):
    view = run(engine, tenant.id, "topup", user_id="alice", amount=100)

    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        conn.execute(text(statement), {"id": view["id"]})

    assert "immutable" in str(caught.value.orig)
    assert entries_of(engine, view["id"]) == [(-100, -100), (100, 100)]


def test_a_correction_is_a_new_transaction_not_an_edit(engine, tenant):
    mistake = run(engine, tenant.id, "topup", user_id="alice", amount=100)

    correction = run(engine, tenant.id, "adjustment", user_id="alice", amount=-90, reason="typo")

    assert correction["balance_after"] == 10
    assert entries_of(engine, mistake["id"]) == [(-100, -100), (100, 100)]
