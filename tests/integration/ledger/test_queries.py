"""Read side: balances, transaction status and wallet history pages."""

from __future__ import annotations

import base64
import uuid

import pytest
from sqlalchemy import Engine

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.errors import InvalidCursor, WalletNotFound
from ledger.pagination import MAX_PAGE_SIZE
from ledger.posting import post_transactions
from ledger.queries import get_balance, get_transaction, wallet_history
from ledger.tenants import create_tenant
from ledger.wallets import update_wallet
from tests.integration.ledger.helpers import run, submit


def history(engine: Engine, tenant_id: uuid.UUID, user_id: str, **page: object) -> dict:
    with unit_of_work(engine) as work:
        return wallet_history(work.connection, tenant_id, user_id, "EUR", **page)  # type: ignore[arg-type]


def all_pages(engine: Engine, tenant_id: uuid.UUID, user_id: str, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        page = history(engine, tenant_id, user_id, limit=limit, cursor=cursor)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_history_lists_a_wallets_entries_newest_first(engine, tenant):
    top = run(engine, tenant.id, "topup", user_id="alice", amount=100, reference_id="t-1")
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=30, reference_id="s-1")
    out = run(engine, tenant.id, "transfer", user_id="alice", to_user_id="bob", amount=20)
    run(engine, tenant.id, "topup", user_id="bob", amount=5)  # not alice's

    items = history(engine, tenant.id, "alice")["items"]

    assert [(i["transaction_id"], i["type"], i["amount"], i["balance_after"]) for i in items] == [
        (out["id"], "transfer", -20, 50),
        (spend["id"], "spend", -30, 70),
        (top["id"], "topup", 100, 100),
    ]
    assert [i["version"] for i in items] == [3, 2, 1]
    assert [i["reference_id"] for i in items[1:]] == ["s-1", "t-1"]
    assert all(i["created_at"] for i in items)
    assert history(engine, tenant.id, "alice")["next_cursor"] is None


def test_history_pages_neither_overlap_nor_miss_an_entry(engine, tenant):
    for amount in range(1, 12):
        run(engine, tenant.id, "topup", user_id="alice", amount=amount)

    pages = all_pages(engine, tenant.id, "alice", limit=4)

    assert [len(p) for p in pages] == [4, 4, 3]
    versions = [item["version"] for page in pages for item in page]
    assert versions == list(range(11, 0, -1))
    assert [item["amount"] for page in pages for item in page] == list(range(11, 0, -1))


def test_a_full_last_page_has_no_next_cursor(engine, tenant):
    for _ in range(4):
        run(engine, tenant.id, "topup", user_id="alice", amount=1)

    assert [len(p) for p in all_pages(engine, tenant.id, "alice", limit=2)] == [2, 2]


def test_new_entries_do_not_shift_the_pages_a_client_is_reading(engine, tenant):
    for _ in range(6):
        run(engine, tenant.id, "topup", user_id="alice", amount=1)
    first = history(engine, tenant.id, "alice", limit=3)

    run(engine, tenant.id, "spend", user_id="alice", amount=2)  # lands on top, not in page 2
    second = history(engine, tenant.id, "alice", limit=3, cursor=first["next_cursor"])

    assert [i["version"] for i in first["items"]] == [6, 5, 4]
    assert [i["version"] for i in second["items"]] == [3, 2, 1]
    assert second["next_cursor"] is None


def test_history_skips_versions_bumped_by_wallet_administration(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=5)
    with unit_of_work(engine) as work:
        update_wallet(work, tenant.id, "alice", "EUR", status="frozen")
    run(engine, tenant.id, "topup", user_id="alice", amount=6)

    pages = all_pages(engine, tenant.id, "alice", limit=1)

    assert [[i["version"] for i in p] for p in pages] == [[3], [1]]


@pytest.mark.parametrize(("asked", "served"), [(0, 1), (-5, 1), (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE)])
def test_the_page_size_is_clamped(engine, tenant, asked, served):
    for _ in range(3):
        run(engine, tenant.id, "topup", user_id="alice", amount=1)

    page = history(engine, tenant.id, "alice", limit=asked)

    assert len(page["items"]) == min(served, 3)


def raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor", ["garbage", raw("v1:0"), raw("v2:3"), raw("v1:x"), raw(f"v1:{2**63}"), "%%%"]
)
def test_a_cursor_we_did_not_issue_is_refused(engine, tenant, cursor):
    run(engine, tenant.id, "topup", user_id="alice", amount=1)

    with pytest.raises(InvalidCursor):
        history(engine, tenant.id, "alice", cursor=cursor)


def test_history_of_a_missing_wallet_is_not_found(engine, tenant):
    with pytest.raises(WalletNotFound):
        history(engine, tenant.id, "ghost")
    with pytest.raises(WalletNotFound):
        history(engine, tenant.id, "@revenue")


def test_balance_reports_balance_holds_available_version_and_precision(engine, tenant):
    run(engine, tenant.id, "topup", user_id="alice", amount=1000)
    run(engine, tenant.id, "spend", user_id="alice", amount=250)
    with unit_of_work(engine) as work:
        update_wallet(work, tenant.id, "alice", "EUR", credit_limit=100)
        wallet = get_balance(work.connection, tenant.id, "alice", "EUR")

    assert wallet == {
        "user_id": "alice",
        "asset_code": "EUR",
        "balance": 750,
        "pending": 0,
        "credit_limit": 100,
        "available": 850,
        "decimal_places": 2,
        "status": "active",
        "version": 3,
    }


def test_balance_reports_the_assets_own_precision(engine, tenant):
    with unit_of_work(engine) as work:
        create_asset(work, tenant.id, "GOLD", "Gold coins", 0)
    run(engine, tenant.id, "topup", user_id="alice", amount=7, asset_code="GOLD")

    with unit_of_work(engine) as work:
        wallet = get_balance(work.connection, tenant.id, "alice", "GOLD")

    assert (wallet["balance"], wallet["decimal_places"], wallet["asset_code"]) == (7, 0, "GOLD")


def test_balance_of_a_missing_wallet_or_system_account_is_not_found(engine, tenant):
    with unit_of_work(engine) as work:
        with pytest.raises(WalletNotFound):
            get_balance(work.connection, tenant.id, "ghost", "EUR")
        with pytest.raises(WalletNotFound):
            get_balance(work.connection, tenant.id, "@revenue", "EUR")


def test_transactions_are_invisible_to_other_tenants(engine, tenant):
    view = run(engine, tenant.id, "topup", user_id="alice", amount=1, reference_id="mine")
    with unit_of_work(engine) as work:
        other = create_tenant(work, "other")
        create_asset(work, other, "EUR", "Euro", 2)

        assert get_transaction(work.connection, other, transaction_id=uuid.UUID(view["id"])) is None
        assert get_transaction(work.connection, other, reference_id="mine") is None
        with pytest.raises(WalletNotFound):
            get_balance(work.connection, other, "alice", "EUR")
        by_reference = get_transaction(work.connection, tenant.id, reference_id="mine")

    assert by_reference == view


def test_a_queued_transaction_shows_no_balance_yet(engine, tenant):
    submission = submit(engine, tenant.id, "topup", user_id="alice", amount=1)

    with unit_of_work(engine) as work:
        view = get_transaction(work.connection, tenant.id, transaction_id=submission.id)

    assert view is not None
    assert (view["status"], view["balance_after"], view["completed_at"]) == ("queued", None, None)
    post_transactions(engine, [submission.id])  # leave nothing queued behind
