"""Every transaction type moves money between the accounts its row of
docs/design.md#transaction-types names, and only those."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.queries import get_balance
from tests.integration.ledger.helpers import apply, balance, run, submit


def journal(engine: Engine, transaction_id: str | uuid.UUID) -> dict[str, tuple[int, int]]:
    """Account owner -> (amount, balance_after) of one transaction's entries."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.owner, e.amount, e.balance_after FROM entries e"
                " JOIN accounts a ON a.id = e.account_id WHERE e.transaction_id = :id"
            ),
            {"id": transaction_id},
        ).all()
    return {owner: (amount, balance_after) for owner, amount, balance_after in rows}


def system_balance(engine: Engine, tenant_id: uuid.UUID, owner: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT balance FROM accounts WHERE tenant_id = :t AND owner = :o"),
            {"t": tenant_id, "o": owner},
        ).scalar_one()


def events(engine: Engine, transaction_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT type FROM events WHERE transaction_id = :id"), {"id": transaction_id}
            ).scalars()
        )


def test_topup_credits_the_wallet_from_the_topup_account(engine, tenant):
    view = run(engine, tenant.id, "topup", user_id="alice", amount=1500, payment_method="card")

    assert view["status"] == "applied"
    assert view["result"] is None
    assert view["balance_after"] == 1500
    assert view["payment_method"] == "card"
    assert view["completed_at"] is not None
    assert journal(engine, view["id"]) == {"@topup": (-1500, -1500), "alice": (1500, 1500)}
    assert balance(engine, tenant.id, "alice") == 1500
    assert events(engine, view["id"]) == ["transaction.applied"]


def test_topup_creates_the_wallet_on_first_use(engine, tenant):
    submission = submit(engine, tenant.id, "topup", user_id="newcomer", amount=10)

    # The wallet exists from acceptance on, before any worker applied the top-up.
    with unit_of_work(engine) as work:
        wallet = get_balance(work.connection, tenant.id, "newcomer", "EUR")
    assert (wallet["balance"], wallet["status"]) == (0, "active")
    assert submission.transaction["status"] == "queued"
    apply(engine, submission.id)
    assert balance(engine, tenant.id, "newcomer") == 10


def test_bonus_credits_the_wallet_from_the_bonus_account(engine, tenant):
    view = run(engine, tenant.id, "bonus", user_id="alice", amount=250, bonus_type="REFERRAL")

    assert view["status"] == "applied"
    assert view["bonus_type"] == "REFERRAL"
    assert journal(engine, view["id"]) == {"@bonus": (-250, -250), "alice": (250, 250)}
    assert system_balance(engine, tenant.id, "@bonus") == -250


def test_spend_debits_the_wallet_into_revenue(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)

    view = run(engine, tenant.id, "spend", user_id="alice", amount=300, item_id="sku-1")

    assert view["status"] == "applied"
    assert view["item_id"] == "sku-1"
    assert view["balance_after"] == 700
    assert journal(engine, view["id"]) == {"alice": (-300, 700), "@revenue": (300, 300)}
    assert system_balance(engine, tenant.id, "@revenue") == 300


def test_spend_may_use_the_whole_balance(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)

    view = run(engine, tenant.id, "spend", user_id="alice", amount=1000)

    assert view["status"] == "applied"
    assert balance(engine, tenant.id, "alice") == 0


def test_refund_returns_a_spend_from_revenue_to_the_wallet(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=400)

    view = run(
        engine,
        tenant.id,
        "refund",
        user_id="alice",
        amount=400,
        original_transaction_id=uuid.UUID(spend["id"]),
    )

    assert view["status"] == "applied"
    assert view["original_transaction_id"] == spend["id"]
    assert journal(engine, view["id"]) == {"@revenue": (-400, 0), "alice": (400, 1000)}
    assert balance(engine, tenant.id, "alice") == 1000


def test_transfer_moves_money_between_wallets_and_creates_the_target(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)

    view = run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=350)

    assert view["status"] == "applied"
    assert (view["balance_after"], view["to_balance_after"]) == (650, 350)
    assert journal(engine, view["id"]) == {"alice": (-350, 650), "bob": (350, 350)}
    assert balance(engine, tenant.id, "alice") == 650
    assert balance(engine, tenant.id, "bob") == 350


def test_positive_adjustment_credits_the_wallet_from_adjustments(engine, tenant):
    view = run(engine, tenant.id, "adjustment", user_id="alice", amount=75, reason="goodwill")

    assert view["status"] == "applied"
    assert view["reason"] == "goodwill"
    assert journal(engine, view["id"]) == {"@adjustments": (-75, -75), "alice": (75, 75)}


def test_negative_adjustment_debits_the_wallet_into_adjustments(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)

    view = run(engine, tenant.id, "adjustment", user_id="alice", amount=-40, reason="chargeback")

    assert view["status"] == "applied"
    assert view["amount"] == -40
    assert journal(engine, view["id"]) == {"alice": (-40, 60), "@adjustments": (40, 40)}
    assert balance(engine, tenant.id, "alice") == 60


def test_every_posting_bumps_the_wallet_version_once(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    run(engine, tenant.id, "spend", user_id="alice", amount=10)
    run(engine, tenant.id, "spend", user_id="alice", amount=1000)  # rejected: no change

    with unit_of_work(engine) as work:
        wallet = get_balance(work.connection, tenant.id, "alice", "EUR")
    assert (wallet["balance"], wallet["version"]) == (90, 2)


def test_metadata_is_kept_with_the_transaction(engine, tenant):
    metadata = {
        "order": "A-17",
        "lines": [1, 2],
        "nested": {"ok": True},
        "note": "café ☕ 😀",
        "literal": "\\u0000 is just text",
    }

    view = run(engine, tenant.id, "topup", user_id="alice", amount=5, metadata=metadata)

    assert view["metadata"] == metadata


def test_system_accounts_mirror_the_wallets_so_the_tenant_sums_to_zero(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    run(engine, tenant.id, "bonus", user_id="bob", amount=100)
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=300)
    run(
        engine,
        tenant.id,
        "refund",
        user_id="alice",
        amount=100,
        original_transaction_id=uuid.UUID(spend["id"]),
    )
    run(engine, tenant.id, "transfer", user_id="bob", to_user_id="carol", amount=60)
    run(engine, tenant.id, "adjustment", user_id="carol", amount=-10, reason="fee")

    with engine.connect() as conn:
        balances = dict(
            conn.execute(
                text("SELECT owner, balance FROM accounts WHERE tenant_id = :t"), {"t": tenant.id}
            ).all()
        )
    assert balances == {
        "@topup": -1000,
        "@bonus": -100,
        "@revenue": 200,
        "@adjustments": 10,
        "@payouts": 0,
        "@exchange": 0,
        "alice": 800,
        "bob": 40,
        "carol": 50,
    }
