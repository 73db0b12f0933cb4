"""GET /metrics reflects what the ledger did, whichever process did it."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TenantFixture
from tests.support.stack import METRICS_TOKEN, Stack


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = requests.get(
        f"{stack.base_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_transactions_by_type_and_outcome(stack: Stack, tenant: TenantFixture):
    client = stack.client(tenant.api_key)
    before = scrape(stack)
    ids = []
    for amount in (300, 200, 100):
        body = {"user_id": "metered", "asset_code": "EUR", "amount": amount}
        response = client.post("/wallets/topup", {**body, "reference_id": uuid.uuid4().hex})
        assert response.status_code == 202
        ids.append(response.json()["id"])
    spend = {"user_id": "metered", "asset_code": "EUR", "amount": 10_000}
    response = client.post("/wallets/spend", {**spend, "reference_id": uuid.uuid4().hex})
    ids.append(response.json()["id"])
    outcomes = [client.wait_final(i)["status"] for i in ids]
    assert outcomes == ["applied", "applied", "applied", "rejected"]

    after = scrape(stack)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "tally_database_up") == 1
    assert grew("tally_transactions_accepted_total", type="topup") == 3
    assert grew("tally_transactions_accepted_total", type="spend") == 1
    assert grew("tally_transactions_applied_total", type="topup") == 3
    assert grew("tally_transactions_rejected_total", type="spend", code="insufficient_funds") == 1
    assert grew("tally_apply_latency_seconds_count") == 4
    assert grew("tally_apply_batch_size_sum") == 4
    assert value(after, "tally_apply_batch_size_count") >= 1
    assert ("tally_oldest_queued_age_seconds", ()) in after
    assert ("tally_relay_republished_total", ()) in after
    # Accept latency, measured in the API process itself (the stack runs one).
    submissions = grew(
        "tally_http_request_duration_seconds_count",
        endpoint="wallets.Topup",
        method="POST",
        status="202",
    )
    assert submissions == 3


def test_metrics_need_the_metrics_token_not_an_api_key(stack: Stack, tenant: TenantFixture):
    url = f"{stack.base_url}/metrics"
    refused = [
        requests.get(url, timeout=30),
        requests.get(url, headers={"Authorization": f"Bearer {tenant.admin_api_key}"}, timeout=30),
        # Not ASCII: once a 500, now simply a wrong token.
        requests.get(url, headers={"Authorization": "Bearer tökén".encode()}, timeout=30),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert {r.json()["code"] for r in refused} == {"invalid_metrics_token"}

    allowed = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert allowed.status_code == 200
    assert "tally_database_up 1.0" in allowed.text
