"""Business rules say no with a stable code, and a rejection changes no balance."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.codes import REJECTION_MESSAGES, RejectionCode
from ledger.db import unit_of_work
from ledger.errors import AssetNotFound, InvalidRequest
from ledger.intake import accept_transaction
from ledger.posting import post_transactions
from ledger.queries import get_balance
from ledger.transaction_request import TransactionRequest
from ledger.wallets import update_wallet
from tests.integration.ledger.helpers import balance, run, status, submit


def wallet(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> dict:
    with unit_of_work(engine) as work:
        return get_balance(work.connection, tenant_id, user_id, "EUR")


def entry_count(engine: Engine, transaction_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM entries WHERE transaction_id = :id"),
            {"id": transaction_id},
        ).scalar_one()


def assert_rejected(engine: Engine, view: dict, code: RejectionCode) -> None:
    assert view["status"] == "rejected"
    assert view["result"] == {"code": code.value, "message": REJECTION_MESSAGES[code]}
    assert view["balance_after"] is None
    assert view["completed_at"] is not None
    assert entry_count(engine, view["id"]) == 0
    with engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT type FROM events WHERE transaction_id = :id"), {"id": view["id"]}
        ).scalars()
        assert list(kinds) == ["transaction.rejected"]


def test_spend_beyond_the_balance_is_rejected_and_changes_nothing(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    before = wallet(engine, tenant.id, "alice")

    view = run(engine, tenant.id, "spend", user_id="alice", amount=101)

    assert_rejected(engine, view, RejectionCode.INSUFFICIENT_FUNDS)
    assert wallet(engine, tenant.id, "alice") == before


def test_transfer_and_negative_adjustment_beyond_the_balance_are_rejected(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)

    transfer = run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=101)
    adjustment = run(engine, tenant.id, "adjustment", user_id="alice", amount=-101, reason="x")

    assert_rejected(engine, transfer, RejectionCode.INSUFFICIENT_FUNDS)
    assert_rejected(engine, adjustment, RejectionCode.INSUFFICIENT_FUNDS)
    assert (balance(engine, tenant.id, "alice"), balance(engine, tenant.id, "bob")) == (100, 0)


def test_debits_of_a_frozen_wallet_are_rejected(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    with unit_of_work(engine) as work:
        update_wallet(work, tenant.id, "alice", "EUR", status="frozen")

    spend = run(engine, tenant.id, "spend", user_id="alice", amount=1)
    transfer = run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=1)
    adjustment = run(engine, tenant.id, "adjustment", user_id="alice", amount=-1, reason="fee")

    for view in (spend, transfer, adjustment):
        assert_rejected(engine, view, RejectionCode.WALLET_FROZEN)
    assert balance(engine, tenant.id, "alice") == 100


def test_a_closed_wallet_can_be_neither_debited_nor_credited(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    run(engine, tenant.id, "topup", user_id="bob", amount=100)
    with unit_of_work(engine) as work:
        update_wallet(work, tenant.id, "alice", "EUR", status="closed")

    rejected = [
        run(engine, tenant.id, "spend", user_id="alice", amount=1),
        run(engine, tenant.id, "topup", user_id="alice", amount=1),
        run(engine, tenant.id, "bonus", user_id="alice", amount=1),
        run(engine, tenant.id, "adjustment", user_id="alice", amount=1, reason="x"),
        run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=1),
        run(engine, tenant.id, "transfer", user_id="bob", to_user_id="alice", amount=1),
    ]

    for view in rejected:
        assert_rejected(engine, view, RejectionCode.WALLET_CLOSED)
    assert (balance(engine, tenant.id, "alice"), balance(engine, tenant.id, "bob")) == (100, 100)


def test_debits_of_a_wallet_that_never_existed_are_rejected(engine, tenant):
    spend = run(engine, tenant.id, "spend", user_id="ghost", amount=1)
    adjustment = run(engine, tenant.id, "adjustment", user_id="ghost", amount=-1, reason="x")
    transfer = run(engine, tenant.id, "transfer", user_id="ghost", to_user_id="bob", amount=1)

    for view in (spend, adjustment, transfer):
        assert_rejected(engine, view, RejectionCode.WALLET_NOT_FOUND)


def test_a_wallet_in_another_asset_does_not_count(engine, tenant):
    with unit_of_work(engine) as work:
        create_asset(work, tenant.id, "GOLD", "Gold coins", 0)
    run(engine, tenant.id, "topup", user_id="alice", amount=100, asset_code="GOLD")

    view = run(engine, tenant.id, "spend", user_id="alice", amount=1)

    assert_rejected(engine, view, RejectionCode.WALLET_NOT_FOUND)
    assert balance(engine, tenant.id, "alice", "GOLD") == 100


def test_a_transfer_to_the_same_wallet_is_refused_at_intake(engine, tenant):
    with pytest.raises(InvalidRequest) as caught:
        submit(engine, tenant.id, "transfer", user_id="alice", to_user_id="alice", amount=1)
    assert caught.value.code == "same_wallet"


def test_intake_itself_refuses_an_unvalidated_same_wallet_transfer(engine, tenant):
    unchecked = TransactionRequest(
        type="transfer",
        reference_id=uuid.uuid4().hex,
        user_id="alice",
        to_user_id="alice",
        asset_code="EUR",
        amount=10,
    )
    with pytest.raises(InvalidRequest) as refused, unit_of_work(engine) as work:
        accept_transaction(work, tenant.id, unchecked, admin=True)
    assert refused.value.code == "same_wallet"


def test_the_engine_rejects_a_same_wallet_transfer_written_behind_intake(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=100)
    with unit_of_work(engine) as work:
        transaction_id = work.connection.execute(
            text(
                "INSERT INTO transactions (tenant_id, type, reference_id, request_hash,"
                " asset_code, amount, user_id, to_user_id)"
                " VALUES (:t, 'transfer', :ref, 'x', 'EUR', 10, 'alice', 'alice') RETURNING id"
            ),
            {"t": tenant.id, "ref": uuid.uuid4().hex},
        ).scalar_one()

    post_transactions(engine, [transaction_id])

    assert_rejected(engine, status(engine, tenant.id, transaction_id), RejectionCode.SAME_WALLET)
    assert wallet(engine, tenant.id, "alice")["version"] == 1


def test_a_submission_in_an_unknown_asset_is_refused_and_records_nothing(engine, tenant):
    reference = uuid.uuid4().hex

    with pytest.raises(AssetNotFound):
        submit(
            engine,
            tenant.id,
            "topup",
            user_id="alice",
            amount=1,
            asset_code="GBP",
            reference_id=reference,
        )

    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM transactions WHERE reference_id = :r"), {"r": reference}
            ).scalar_one()
            == 0
        )
