"""Balances as of a moment and statements through the API: JSON pages, the CSV download,
and the refusals of a bad period or cursor."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run
from tests.integration.ledger.time_helpers import database_now, post_backdated, topups

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def test_balance_as_of_and_known_at(api: Api) -> None:
    run(api.engine, api.tenant.id, "topup", user_id="ola", amount=1000)
    known = database_now(api.engine)
    earlier = known - timedelta(days=2)
    post_backdated(api.engine, api.tenant.id, earlier, "topup", user_id="ola", amount=250)
    query = {"asset_code": "EUR"}

    now = api.get("/wallets/ola/balance", query_string=query).get_json()
    assert (now["balance"], now["available"], now["as_of"], now["known_at"]) == (
        1250,
        1250,
        None,
        None,
    )
    as_of = api.get("/wallets/ola/balance", query_string={**query, "as_of": known.isoformat()})
    body = as_of.get_json()
    assert body["balance"] == 1250 and datetime.fromisoformat(body["as_of"]) == known
    assert "pending" not in body and "available" not in body and body["known_at"] is None
    knowing = {**query, "as_of": known.isoformat(), "known_at": known.isoformat()}
    assert api.get("/wallets/ola/balance", query_string=knowing).get_json()["balance"] == 1000
    only_known = {**query, "known_at": known.isoformat()}
    answer = api.get("/wallets/ola/balance", query_string=only_known).get_json()
    assert answer["balance"] == 1000 and answer["as_of"] == answer["known_at"]
    before = {**query, "as_of": (earlier - timedelta(seconds=1)).isoformat()}
    assert api.get("/wallets/ola/balance", query_string=before).get_json()["balance"] == 0

    accounts = api.get(
        "/system-accounts",
        query_string={**query, "as_of": known.isoformat(), "known_at": known.isoformat()},
    ).get_json()
    topup = next(account for account in accounts if account["name"] == "@topup")
    assert topup["balance"] == -1000 and topup["known_at"] is not None
    current = api.get("/system-accounts", query_string=query).get_json()
    assert next(a for a in current if a["name"] == "@topup")["balance"] == -1250


def _statement(api: Api, user: str, **query: object) -> dict:
    answer = api.get(f"/wallets/{user}/statement", query_string={"asset_code": "EUR", **query})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_statement_pages_concatenate_to_the_period_and_the_csv_matches(api: Api) -> None:
    moves = [(10_000, 0, 0), *((100 + n, n % 6 + 1, 30) for n in range(1, 12)), (-300, 5, 40)]
    topups(api.engine, api.tenant.id, "pia", [(a, at(e), at(r)) for a, e, r in moves])
    period = {"from": at(0).isoformat(), "to": at(6).isoformat()}
    whole = _statement(api, "pia", **period, limit=1000)
    assert whole["opening_balance"] == 10_000 and whole["next_cursor"] is None
    expected = whole["opening_balance"] + sum(e["amount"] for e in whole["entries"])
    assert whole["closing_balance"] == expected
    assert whole["totals"] == {
        "adjustment": {"credits": 0, "debits": 300},
        "topup": {"credits": sum(a for a, e, _ in moves[1:] if 0 < e <= 6 and a > 0), "debits": 0},
    }

    pages, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = _statement(api, "pia", **period, limit=3, **extra)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e for page in pages for e in page["entries"]] == whole["entries"]
    running = whole["opening_balance"]
    for page in pages:
        assert page["page_opening_balance"] == running
        running += sum(entry["amount"] for entry in page["entries"])

    download = api.get(
        "/wallets/pia/statement",
        query_string={"asset_code": "EUR", **period, "limit": 1},
        headers={"Accept": "text/csv"},
    )
    assert download.status_code == 200 and download.mimetype == "text/csv"
    disposition = download.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="statement-pia-EUR.csv"'
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert len(rows) == len(whole["entries"])
    for row, entry in zip(rows, whole["entries"], strict=True):
        assert row["transaction_id"] == entry["transaction_id"]
        assert datetime.fromisoformat(row["effective_at"]) == datetime.fromisoformat(
            entry["effective_at"]
        )
        assert datetime.fromisoformat(row["recorded_at"]) == datetime.fromisoformat(
            entry["recorded_at"]
        )
        assert (row["type"], row["reference_id"]) == (entry["type"], entry["reference_id"])
        assert int(row["amount"]) == entry["amount"]
        assert int(row["running_balance"]) == entry["running_balance"]
        assert row["amount_decimal"] == f"{entry['amount'] / 100:.2f}"
        assert row["running_balance_decimal"] == f"{entry['running_balance'] / 100:.2f}"


def test_a_statement_refuses_a_bad_period_or_cursor(api: Api) -> None:
    run(api.engine, api.tenant.id, "topup", user_id="quinn", amount=5)
    eur = {"asset_code": "EUR"}
    path = "/wallets/quinn/statement"
    same = {**eur, "from": at(0).isoformat(), "to": at(0).isoformat()}
    assert api.get(path, query_string=same).get_json()["code"] == "invalid_period"
    future = {**eur, "from": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    assert api.get(path, query_string=future).get_json()["code"] == "invalid_period"
    assert api.get(path, query_string=eur).get_json()["code"] == "validation_failed"
    whole = _statement(api, "quinn", **{"from": at(0).isoformat(), "limit": 10_000})
    assert len(whole["entries"]) == 1
    too_long = {**eur, "from": at(0).isoformat(), "limit": 10_001}
    assert api.get(path, query_string=too_long).get_json()["code"] == "validation_failed"
    bad = {**eur, "from": at(0).isoformat(), "cursor": "bad"}
    assert api.get(path, query_string=bad).get_json()["code"] == "invalid_cursor"
    naive = _statement(api, "quinn", **{"from": "2026-03-01T00:00:00"})
    assert naive["from"] == "2026-03-01T00:00:00+00:00"
    assert naive["closing_balance"] == 5 and naive["entries"][0]["amount"] == 5
    missing = api.get("/wallets/nobody/statement", query_string={**eur, "from": at(0).isoformat()})
    assert missing.get_json()["code"] == "wallet_not_found"
    missing_csv = api.get(
        "/wallets/nobody/statement",
        query_string={**eur, "from": at(0).isoformat()},
        headers={"Accept": "text/csv"},
    )
    assert missing_csv.status_code == 404 and missing_csv.mimetype == "application/problem+json"
