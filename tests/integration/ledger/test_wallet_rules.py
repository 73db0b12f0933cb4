"""Wallet administration: freezing, closing and credit limits, and how postings obey them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.errors import InvalidRequest, WalletNotFound
from ledger.money import MAX_AMOUNT
from ledger.queries import get_balance
from ledger.verify import verify_ledger
from ledger.wallets import update_wallet
from tests.integration.ledger.helpers import balance, run


def set_wallet(engine: Engine, tenant_id: uuid.UUID, user_id: str, **changes: object) -> None:
    with unit_of_work(engine) as work:
        update_wallet(work, tenant_id, user_id, "EUR", **changes)  # type: ignore[arg-type]


def wallet(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> dict:
    with unit_of_work(engine) as work:
        return get_balance(work.connection, tenant_id, user_id, "EUR")


def test_a_frozen_wallet_still_accepts_credits(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    run(engine, tenant.id, "topup", user_id="bob", amount=100)
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=30)
    set_wallet(engine, tenant.id, "alice", status="frozen")

    credits = [
        run(engine, tenant.id, "topup", user_id="alice", amount=10),
        run(engine, tenant.id, "bonus", user_id="alice", amount=10),
        run(engine, tenant.id, "adjustment", user_id="alice", amount=10, reason="goodwill"),
        run(engine, tenant.id, "transfer", user_id="bob", to_user_id="alice", amount=10),
        run(
            engine,
            tenant.id,
            "refund",
            user_id="alice",
            amount=10,
            original_transaction_id=uuid.UUID(spend["id"]),
        ),
    ]

    assert [view["status"] for view in credits] == ["applied"] * 5
    assert balance(engine, tenant.id, "alice") == 120
    assert wallet(engine, tenant.id, "alice")["status"] == "frozen"


def test_a_frozen_wallet_can_be_debited_again_once_unfrozen(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    set_wallet(engine, tenant.id, "alice", status="frozen")
    frozen = run(engine, tenant.id, "spend", user_id="alice", amount=10)

    set_wallet(engine, tenant.id, "alice", status="active")
    thawed = run(engine, tenant.id, "spend", user_id="alice", amount=10)

    assert frozen["result"]["code"] == "wallet_frozen"
    assert thawed["status"] == "applied"
    assert balance(engine, tenant.id, "alice") == 90


def test_a_wallet_may_go_down_to_exactly_its_credit_limit(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)
    set_wallet(engine, tenant.id, "alice", credit_limit=50)
    assert wallet(engine, tenant.id, "alice")["available"] == 60

    to_the_limit = run(engine, tenant.id, "spend", user_id="alice", amount=60)
    one_more = run(engine, tenant.id, "spend", user_id="alice", amount=1)

    assert to_the_limit["status"] == "applied"
    assert to_the_limit["balance_after"] == -50
    assert one_more["result"]["code"] == "insufficient_funds"
    state = wallet(engine, tenant.id, "alice")
    assert (state["balance"], state["credit_limit"], state["available"]) == (-50, 50, 0)


def test_a_spend_one_unit_past_the_credit_limit_is_rejected(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)
    set_wallet(engine, tenant.id, "alice", credit_limit=50)

    past = run(engine, tenant.id, "spend", user_id="alice", amount=61)
    transfer = run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=61)

    assert past["result"]["code"] == "insufficient_funds"
    assert transfer["result"]["code"] == "insufficient_funds"
    assert balance(engine, tenant.id, "alice") == 10


def test_lowering_the_credit_limit_below_a_negative_balance_is_refused(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)
    set_wallet(engine, tenant.id, "alice", credit_limit=50)
    run(engine, tenant.id, "spend", user_id="alice", amount=40)  # balance -30
    version = wallet(engine, tenant.id, "alice")["version"]

    with pytest.raises(InvalidRequest) as caught:
        set_wallet(engine, tenant.id, "alice", credit_limit=29)

    assert caught.value.code == "credit_limit_below_balance"
    state = wallet(engine, tenant.id, "alice")
    assert (state["credit_limit"], state["balance"], state["version"]) == (50, -30, version)
    set_wallet(engine, tenant.id, "alice", credit_limit=30)  # exactly the debt is fine
    assert wallet(engine, tenant.id, "alice")["available"] == 0


def test_lowering_the_credit_limit_after_the_debt_is_repaid_keeps_the_ledger_valid(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1)
    set_wallet(engine, tenant.id, "alice", credit_limit=50)
    run(engine, tenant.id, "spend", user_id="alice", amount=51)  # balance -50, legally
    run(engine, tenant.id, "topup", user_id="alice", amount=50)  # repaid: balance 0

    set_wallet(engine, tenant.id, "alice", credit_limit=0)

    # The journal still shows -50 from when the limit allowed it: that is history, not
    # a violation, and `tally verify` must not page anyone for it.
    with engine.connect() as conn:
        report = verify_ledger(conn, tenant.id)
    assert report.ok, "\n".join(report.lines())
    assert run(engine, tenant.id, "spend", user_id="alice", amount=1)["result"]["code"] == (
        "insufficient_funds"
    )


def test_verify_still_catches_a_journal_line_below_the_limit_in_force(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)
    run(engine, tenant.id, "spend", user_id="alice", amount=10)
    with engine.connect() as conn:
        # Behind the engine's back, never committed: pretend the spend took the wallet to -1.
        conn.execute(text("ALTER TABLE entries DISABLE TRIGGER entries_no_update_or_delete"))
        conn.execute(
            text(
                "UPDATE entries SET balance_after = -1 WHERE account_id = ("
                " SELECT id FROM accounts WHERE tenant_id = :t AND owner = 'alice')"
                " AND account_version = 2"
            ),
            {"t": tenant.id},
        )
        report = verify_ledger(conn, tenant.id)
        conn.rollback()

    failing = [check for check in report.checks if not check.ok]
    assert [check.name for check in failing] == [
        "each account's last entry shows its stored balance",
        "no journal line took a wallet below its credit limit",
    ]


def test_wallet_administration_bumps_the_version(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)

    set_wallet(engine, tenant.id, "alice", status="frozen")
    set_wallet(engine, tenant.id, "alice", credit_limit=5)

    assert wallet(engine, tenant.id, "alice")["version"] == 3


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"status": "deleted"}, "invalid_status"),
        ({"credit_limit": -1}, "invalid_credit_limit"),
        ({"credit_limit": MAX_AMOUNT + 1}, "invalid_credit_limit"),
        ({"credit_limit": 1.5}, "invalid_credit_limit"),
        ({"credit_limit": True}, "invalid_credit_limit"),
    ],
)
def test_invalid_wallet_settings_are_refused(engine, tenant, changes, code):
    run(engine, tenant.id, "topup", user_id="alice", amount=10)

    with pytest.raises(InvalidRequest) as caught:
        set_wallet(engine, tenant.id, "alice", **changes)

    assert caught.value.code == code


def test_administering_a_missing_wallet_reports_it_missing(engine, tenant):
    with pytest.raises(WalletNotFound):
        set_wallet(engine, tenant.id, "ghost", status="frozen")


def test_system_accounts_cannot_be_administered_as_wallets(engine, tenant):
    with pytest.raises(WalletNotFound):
        set_wallet(engine, tenant.id, "@revenue", status="frozen")
