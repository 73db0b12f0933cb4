"""Money is 128-bit: wallets hold up to MAX_AMOUNT, system accounts never block on their size."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.codes import RejectionCode
from ledger.db import unit_of_work
from ledger.errors import InvalidRequest
from ledger.intake import accept_transaction
from ledger.money import MAX_AMOUNT
from ledger.posting import post_transactions
from ledger.transaction_request import TransactionRequest
from tests.conftest import assert_invariants
from tests.integration.ledger.helpers import balance, run, submit

JS_SAFE = 2**53 - 1


def credit(type: str, user_id: str, amount: int, asset: str = "EUR") -> TransactionRequest:
    return TransactionRequest(
        type=type, reference_id=uuid.uuid4().hex, user_id=user_id, asset_code=asset, amount=amount
    )


def submit_all(engine: Engine, tenant_id: uuid.UUID, requests: list[TransactionRequest]) -> list:
    with unit_of_work(engine) as work:
        return [accept_transaction(work, tenant_id, r.validated(), admin=True).id for r in requests]


def system_balance(engine: Engine, tenant_id: uuid.UUID, owner: str, asset: str = "EUR") -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT balance FROM accounts"
                " WHERE tenant_id = :t AND asset_code = :a AND owner = :o"
            ),
            {"t": tenant_id, "a": asset, "o": owner},
        ).scalar_one()


def test_numeric_loads_as_int_when_whole_and_as_decimal_otherwise(engine):
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT CAST(:big AS numeric(1000,0)), CAST(-12 AS numeric(39,0)),"
                " sum(x), CAST(2.50 AS numeric), CAST('NaN' AS numeric),"
                " ARRAY[CAST(1 AS numeric), :big] FROM generate_series(1, 3) x"
            ),
            {"big": -(2**200)},
        ).one()

    assert row == (-(2**200), -12, 6, Decimal("2.50"), row[4], [1, -(2**200)])
    assert [type(value) for value in (row[0], row[1], row[2])] == [int, int, int]
    assert isinstance(row[3], Decimal) and row[4].is_nan()


def test_one_batch_of_520_top_ups_of_2_53_leaves_top_ups_still_applying(engine, tenant):
    # The reported probe: @topup passed -2**62 and every later top-up was refused.
    fills = [credit("topup", f"user-{i % 8}", JS_SAFE) for i in range(520)]
    outcomes = post_transactions(engine, submit_all(engine, tenant.id, fills)).outcomes
    assert Counter(o.status for o in outcomes) == {"applied": 520}
    assert system_balance(engine, tenant.id, "@topup") == -520 * JS_SAFE

    after = run(engine, tenant.id, "topup", user_id="latecomer", amount=JS_SAFE)

    assert after["status"] == "applied"
    assert after["balance_after"] == JS_SAFE
    assert system_balance(engine, tenant.id, "@topup") == -521 * JS_SAFE
    assert_invariants(engine, tenant.id)


def test_a_wallet_holds_ten_whole_units_of_an_18_decimal_asset_and_far_more(engine, tenant):
    with unit_of_work(engine) as work:
        create_asset(work, tenant.id, "WEI", "Wei", 18)
    ten_units = 10 * 10**18

    first = run(engine, tenant.id, "topup", user_id="alice", asset_code="WEI", amount=ten_units)
    second = run(engine, tenant.id, "bonus", user_id="alice", asset_code="WEI", amount=2**100)
    spent = run(engine, tenant.id, "spend", user_id="alice", asset_code="WEI", amount=2**99)

    assert first["status"] == second["status"] == spent["status"] == "applied"
    assert first["amount"] == ten_units
    assert second["amount"] == 2**100
    assert spent["balance_after"] == ten_units + 2**99
    assert balance(engine, tenant.id, "alice", "WEI") == ten_units + 2**99
    assert isinstance(balance(engine, tenant.id, "alice", "WEI"), int)
    assert_invariants(engine, tenant.id)


@pytest.mark.parametrize("amount", [MAX_AMOUNT + 1, 2**200])
def test_an_amount_beyond_max_amount_is_refused(engine, tenant, amount):
    with pytest.raises(InvalidRequest) as refused:
        submit(engine, tenant.id, "topup", user_id="alice", amount=amount)
    assert refused.value.code == "invalid_amount"


def test_the_database_refuses_an_amount_beyond_max_amount(engine, tenant):
    # The CHECK constraint, not only the request check, bounds a stored amount.
    with engine.connect() as conn, pytest.raises(Exception, match="amount_within_limit"):
        conn.execute(
            text(
                "INSERT INTO transactions (tenant_id, type, reference_id, request_hash,"
                " asset_code, amount, user_id) VALUES (:t, 'topup', 'r', 'h', 'EUR', :a, 'u')"
            ),
            {"t": tenant.id, "a": MAX_AMOUNT + 1},
        )


def test_a_wallet_balance_may_reach_max_amount_but_not_pass_it(engine, tenant):
    # Top-ups and bonuses share the load, so only the wallet nears the ceiling.
    fills = [credit("topup", "whale", MAX_AMOUNT - 5), credit("bonus", "whale", 5)]
    outcomes = post_transactions(engine, submit_all(engine, tenant.id, fills)).outcomes
    assert Counter(o.status for o in outcomes) == {"applied": 2}
    assert balance(engine, tenant.id, "whale") == MAX_AMOUNT

    beyond = run(engine, tenant.id, "topup", user_id="whale", amount=1)

    assert beyond["status"] == "rejected"
    assert beyond["result"]["code"] == RejectionCode.BALANCE_LIMIT_EXCEEDED
    assert balance(engine, tenant.id, "whale") == MAX_AMOUNT
    # Spending from the full wallet still works: the ceiling caps growth, not use.
    assert run(engine, tenant.id, "spend", user_id="whale", amount=MAX_AMOUNT)["status"] == (
        "applied"
    )
    assert_invariants(engine, tenant.id)


def test_a_system_account_beyond_2_127_keeps_accepting(engine, tenant):
    fills = [credit("topup", f"user-{i}", MAX_AMOUNT) for i in range(3)]
    outcomes = post_transactions(engine, submit_all(engine, tenant.id, fills)).outcomes
    assert Counter(o.status for o in outcomes) == {"applied": 3}
    assert system_balance(engine, tenant.id, "@topup") == -3 * MAX_AMOUNT

    spends = [
        run(engine, tenant.id, "spend", user_id=f"user-{i}", amount=MAX_AMOUNT) for i in range(3)
    ]
    again = run(engine, tenant.id, "topup", user_id="user-0", amount=MAX_AMOUNT)

    assert [s["status"] for s in spends] == ["applied"] * 3
    assert again["status"] == "applied"
    assert system_balance(engine, tenant.id, "@topup") == -4 * MAX_AMOUNT
    assert system_balance(engine, tenant.id, "@revenue") == 3 * MAX_AMOUNT
    assert system_balance(engine, tenant.id, "@revenue") > 2**127
    assert_invariants(engine, tenant.id)
