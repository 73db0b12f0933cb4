"""/metrics: refused without a configured token, any header is just a wrong token, the
ledger is read as tally_monitor, and scrapes reuse one reading for a while."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from api.metrics import monitor_engine
from config.settings import Settings
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run

TOKEN = "metrics-secret"


def scrape(app, authorization: str | None = f"Bearer {TOKEN}"):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return app.test_client().get("/metrics", headers=headers)


def test_without_a_configured_token_metrics_are_refused(make_app):
    app = make_app(metrics_token=None)

    assert scrape(app).status_code == 403
    assert scrape(app).json["code"] == "metrics_token_not_configured"


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer tökén", "Bearer \x7f"])
def test_a_missing_wrong_or_non_ascii_token_is_refused_401(make_app, authorization):
    app = make_app(metrics_token=TOKEN)

    response = scrape(app, authorization)

    assert response.status_code == 401
    assert response.json["code"] == "invalid_metrics_token"


def accepted_topups(body: str) -> float:
    for line in body.splitlines():
        if line.startswith('tally_transactions_accepted_total{type="topup"}'):
            return float(line.split()[-1])
    return 0.0


def test_scrapes_within_the_cache_period_reuse_one_reading(
    make_app, engine: Engine, tenant: TenantFixture
):
    app = make_app(metrics_token=TOKEN, metrics_cache_seconds=3600)
    run(engine, tenant.id, "topup", user_id="alice", amount=1)
    first = scrape(app).get_data(as_text=True)
    run(engine, tenant.id, "topup", user_id="alice", amount=1)

    second = scrape(app).get_data(as_text=True)

    assert accepted_topups(first) >= 1
    assert accepted_topups(second) == accepted_topups(first)
    fresh = make_app(metrics_token=TOKEN, metrics_cache_seconds=0)
    assert accepted_topups(scrape(fresh).get_data(as_text=True)) == accepted_topups(first) + 1


def test_the_monitor_role_counts_transactions_and_reads_nothing_else(database_url: str):
    monitor_url = Settings(database_url=database_url).require_monitor_database_url()
    engine = monitor_engine(monitor_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "tally_monitor"
            conn.execute(text("SELECT count(*) FROM transactions")).scalar()
            with pytest.raises(DBAPIError, match="permission denied"):
                conn.execute(text("SELECT key_hash FROM api_keys"))
    finally:
        engine.dispose()
