"""The wallet page's statement form: the statement renders with its balances and entries,
and its CSV downloads the same period."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape

from sqlalchemy import Engine

from tests.conftest import TenantFixture
from tests.integration.console.conftest import Console
from tests.integration.ledger.time_helpers import topups

BASE = datetime(2026, 2, 1, tzinfo=UTC)


def test_the_statement_form_renders_and_its_csv_downloads(
    reader: Console, engine: Engine, tenant: TenantFixture
) -> None:
    moves = [(5_000, 0, 0), (1_250, 10, 10), (-250, 20, 30), (400, 90, 90)]
    topups(
        engine,
        tenant.id,
        "rita",
        [(a, BASE + timedelta(minutes=e), BASE + timedelta(minutes=r)) for a, e, r in moves],
    )
    wallet = reader.text("/wallets/rita")
    assert 'id="statement-form"' in wallet

    page = reader.text(
        "/wallets/rita/statement?asset=EUR&from=2026-02-01T00:05&to=2026-02-01T01:00"
    )
    assert re.search(r'class="num opening">50\.00 EUR<', page)
    assert re.search(r'class="num closing">60\.00 EUR<', page)
    assert page.count('class="statement-entry"') == 2
    link = re.search(r'id="statement-csv" class="button" href="([^"]+)"', page)
    assert link is not None
    download = reader.get(unescape(link.group(1)).removeprefix("/console"))
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert "statement-rita-EUR.csv" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert [(r["amount"], r["running_balance_decimal"]) for r in rows] == [
        ("1250", "62.50"),
        ("-250", "60.00"),
    ]

    refused = reader.get(
        "/wallets/rita/statement?asset=EUR&from=2026-02-01T01:00&to=2026-02-01T00:00"
    )
    assert refused.status_code == 422 and "invalid_period" in refused.get_data(as_text=True)
    assert reader.get("/wallets/rita/statement?asset=EUR&from=yesterday").status_code == 422
