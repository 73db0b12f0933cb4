"""Submissions made while the broker is unreachable are accepted, and applied once it is back.

The API runs with BROKER_URL pointing at a port nobody listens on: every publish fails.
A 202 still means the row is committed (docs/design.md#accepted-means-committed). A
worker and its relay, started later against the real broker on the same queue and
database, find the rows left queued, re-publish them and apply them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine

from tests.conftest import TenantFixture, backend_missing
from tests.support.stack import (
    Stack,
    free_port,
    outcome_of,
    stack_env,
    start_api_degraded,
    status_counts,
)

SUBMISSIONS = 30


def unreachable(broker_url: str) -> str:
    """The same kind of broker URL, on a local port nothing listens on."""
    parts = urlsplit(broker_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{free_port()}" if credentials else f"127.0.0.1:{free_port()}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="module")
def broken_api(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if not broker_url.startswith(("redis://", "amqp://")):
        backend_missing("needs a TCP broker URL to point at a closed port")
    log_dir = tmp_path_factory.mktemp("broken-broker-logs")
    dead = unreachable(broker_url)
    stack = Stack(database_url, dead, log_dir, stack_env(database_url, dead))
    start_api_degraded(stack)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def recovery_worker(
    broken_api: Stack, database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A worker (with relay) on the real broker, consuming the broken API's queue."""
    log_dir = tmp_path_factory.mktemp("recovery-worker-logs")
    env = stack_env(database_url, broker_url, TALLY_QUEUE=broken_api.env["TALLY_QUEUE"])
    stack = Stack(database_url, broker_url, log_dir, env)
    yield stack
    stack.stop()


def test_health_reports_the_broker_unavailable(broken_api: Stack) -> None:
    response = broken_api.client("").get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "unavailable"}
    assert int(response.headers["Retry-After"]) > 0


def test_submissions_during_a_broker_outage_are_applied_once_it_returns(
    broken_api: Stack, recovery_worker: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    client = broken_api.client(tenant.api_key)
    ids, slowest = [], 0.0
    for i in range(SUBMISSIONS):
        started = time.monotonic()
        response = client.post(
            "/wallets/topup",
            {
                "user_id": f"u{i % 3}",
                "asset_code": "EUR",
                "amount": 10,
                "reference_id": uuid.uuid4().hex,
            },
        )
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    # The publish fails fast (connection refused), it is not retried for long.
    assert slowest < 10, f"a submission took {slowest:.1f}s with the broker down"

    # Committed and waiting: nothing applies them while no worker can be reached.
    assert status_counts(engine, tenant.id) == {"queued": SUBMISSIONS}
    assert client.get(f"/transactions/{ids[0]}").json()["status"] == "queued"

    recovery_worker.start_worker()

    # The broken API still serves status: long-polls are woken through PostgreSQL.
    outcomes = [outcome_of(client, transaction_id) for transaction_id in ids]
    assert {o["status"] for o in outcomes} == {"applied"}
    assert status_counts(engine, tenant.id) == {"applied": SUBMISSIONS}
    for user in ("u0", "u1", "u2"):
        balance = client.get(f"/wallets/{user}/balance", params={"asset_code": "EUR"}).json()
        assert balance["balance"] == 100
