"""Every page renders for a tenant with nothing in it, and with thousands of rows, a page
at a time."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Engine

from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.intake import accept_transactions
from ledger.system_accounts import define_system_account
from ledger.transaction_request import TransactionRequest
from ledger.webhooks.endpoints import create_endpoint
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console, applied, failed

PAGES = ["/", "/transactions", "/wallets", "/system-accounts", "/webhooks", "/keys", "/audit"]


def test_every_page_renders_for_an_empty_tenant(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    for path in PAGES:
        admin.text(path)

    assert 'id="no-results"' in admin.text("/transactions")
    assert 'id="no-endpoints"' in admin.text("/webhooks")
    assert 'id="queue-depth">0<' in admin.text("/")
    with unit_of_work(engine) as work:
        endpoint = create_endpoint(
            work, tenant.id, box=secret_box(), url="http://127.0.0.1:9/h", allow_private=True
        )
    assert 'id="no-deliveries"' in admin.text(f"/webhooks/{endpoint['id']}")


def _queue(engine: Engine, tenant: TenantFixture, count: int) -> None:
    for start in range(0, count, 1000):
        requests = [
            TransactionRequest(
                type="topup",
                reference_id=f"bulk-{n}",
                user_id=f"user-{n % 40}",
                asset_code="EUR",
                amount=100 + n,
            ).validated()
            for n in range(start, min(start + 1000, count))
        ]
        with unit_of_work(engine) as work:
            accept_transactions(work, tenant.id, requests, admin=True)


def test_thousands_of_transactions_are_listed_a_page_at_a_time(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    _queue(engine, tenant, 3000)

    seen: list[str] = []
    path = "/transactions"
    while path and len(seen) < 200:
        page = admin.text(path)
        seen += re.findall(
            r'class="transaction-link" href="/console/transactions/([0-9a-f-]+)"', page
        )
        more = re.search(r'id="next-page" href="/console([^"]+)"', page)
        path = more.group(1).replace("&amp;", "&") if more else ""

    assert len(seen) == 200 and len(set(seen)) == 200  # four pages of 50, no repeats
    overview = admin.text("/")
    assert 'id="queue-depth">3000<' in overview
    assert '<td class="submitted">3000</td>' in overview


def test_the_search_finds_by_reference_user_status_and_code(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    mine = applied(engine, tenant.id, "topup", user_id="alice", amount=1000)
    applied(engine, tenant.id, "spend", user_id="bob", amount=5)  # rejected: no funds
    broken = failed(engine, tenant.id, user_id="carol", amount=7)

    def rows(query: str) -> list[str]:
        return re.findall(
            r'href="/console/transactions/([0-9a-f-]+)"', admin.text(f"/transactions?{query}")
        )

    assert rows(f"q={mine.transaction['reference_id']}") == [str(mine.id)]
    assert rows(f"q={mine.id}") == [str(mine.id)]
    assert rows("user_id=alice") == [str(mine.id)]
    assert rows("status=failed") == [str(broken.id)]
    assert len(rows("status=rejected&code=wallet_not_found")) == 1
    assert rows("type=refund") == []
    assert admin.get("/transactions?status=lost").status_code == 400
    assert admin.get("/transactions?cursor=garbage").status_code == 400
    assert admin.get("/transactions?from=yesterday").status_code == 400


def test_a_transactions_page_tells_its_whole_story(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    topup = applied(
        engine, tenant.id, "topup", user_id="alice", amount=1250, metadata={"order": "A-1"}
    )

    page = admin.text(f"/transactions/{topup.id}")

    assert 'id="status" class="badge applied"' in page
    assert page.count('class="entry"') == 2  # the wallet and the system account
    assert "12.50 EUR" in page
    assert page.count('class="event"') == 1
    assert "A-1" in page


def test_the_overview_counts_and_charts_the_last_hour(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=100)
    applied(engine, tenant.id, "spend", user_id="bob", amount=5)
    failed(engine, tenant.id, user_id="carol", amount=7)

    page = admin.text("/")

    hour = page.split('id="stats-hour"')[1].split("</section>")[0]
    assert '<td class="submitted">3</td>' in hour
    assert '<td class="applied">1</td>' in hour and '<td class="rejected">1</td>' in hour
    assert '<td class="failed">1</td>' in hour
    assert "wallet_not_found" in hour
    for chart in ("chart-applied", "chart-latency", "chart-rejections"):
        assert f'<svg id="{chart}"' in page
    # One bar of the last hour's per-minute chart holds the applied topup.
    assert re.search(r"UTC: 1</title></rect>", page)


def test_a_users_wallets_history_and_holds(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="dora", amount=10_000)
    from datetime import UTC, datetime, timedelta

    applied(
        engine,
        tenant.id,
        "hold",
        user_id="dora",
        amount=2_500,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )

    page = admin.text(f"/wallets/dora?x={uuid.uuid4().hex}")

    assert 'data-asset="EUR"' in page
    assert '<td class="num balance">100.00 EUR</td>' in page
    assert '<td class="num available">75.00 EUR</td>' in page
    assert page.count('class="history-entry"') == 1
    assert page.count('class="hold"') == 1


def test_the_system_accounts_page_lists_each_asset_with_balances(
    reader: Console, engine: Engine, tenant: TenantFixture
) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=12345)
    with unit_of_work(engine) as work:
        define_system_account(work, tenant.id, "@fees", "Card <fees>", actor=OPERATOR)

    page = reader.text("/system-accounts")

    rows = re.findall(
        r'<tr class="system-account"><td><code>([^<]+)</code></td><td>([a-z-]+)</td>'
        r'<td>(.*?)</td><td class="num balance">([^<]+)</td>',
        page,
    )
    assert [(name, kind, balance) for name, kind, _, balance in rows] == [
        ("@adjustments", "built-in", "0.00 EUR"),
        ("@bonus", "built-in", "0.00 EUR"),
        ("@exchange", "built-in", "0.00 EUR"),
        ("@fees", "defined", "0.00 EUR"),
        ("@payouts", "built-in", "0.00 EUR"),
        ("@revenue", "built-in", "0.00 EUR"),
        ("@topup", "built-in", "-123.45 EUR"),
    ]
    assert "Card &lt;fees&gt;" in page
    assert 'id="nav-system-accounts"' in page


def test_a_split_and_its_refund_show_each_leg_and_what_it_gave_back(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    with unit_of_work(engine) as work:
        define_system_account(work, tenant.id, "@fees", actor=OPERATOR)
    applied(engine, tenant.id, "topup", user_id="buyer", amount=10_000)
    legs = [{"to_user_id": "seller", "amount": 9000}, {"to_account": "@fees", "amount": 1000}]
    spend = applied(engine, tenant.id, "spend", user_id="buyer", amount=10_000, splits=legs)
    refund = applied(
        engine,
        tenant.id,
        "refund",
        user_id="buyer",
        amount=5000,
        original_transaction_id=spend.id,
    )
    journal = applied(
        engine,
        tenant.id,
        "journal",
        reason="settle",
        postings=[{"from": "@fees", "to": "seller", "asset_code": "EUR", "amount": 100}],
    )

    spend_page = admin.text(f"/transactions/{spend.id}")
    refund_page = admin.text(f"/transactions/{refund.id}")
    journal_page = admin.text(f"/transactions/{journal.id}")

    assert ">Legs</h3>" in spend_page and spend_page.count('class="leg"') == 2
    assert "90.00 EUR" in spend_page and "<code>@fees</code>" in spend_page
    assert spend_page.count('class="entry"') == 3  # the buyer once, each leg once
    assert ">Given back by each leg</h3>" in refund_page
    assert "45.00 EUR" in refund_page and "5.00 EUR" in refund_page
    assert journal_page.count('class="posting"') == 1
