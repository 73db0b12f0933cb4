"""`?wait=` honours its bound when no worker is there to finish the transaction.

This module starts an API alone: no worker runs against the test database while it waits
(the end-to-end stacks of other modules are torn down with their modules).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TenantFixture
from tests.support.stack import Stack, outcome_of, stack_env


@pytest.fixture(scope="module")
def api_only(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir: Path = tmp_path_factory.mktemp("api-only-logs")
    stack = Stack(database_url, redis_url, log_dir, stack_env(database_url, redis_url))
    stack.start_api()
    yield stack
    stack.stop()


def test_wait_ends_at_its_bound_while_the_transaction_is_queued(
    api_only: Stack, tenant: TenantFixture
) -> None:
    client = api_only.client(tenant.api_key)
    accepted = client.post(
        "/wallets/topup",
        {"user_id": "lena", "asset_code": "EUR", "amount": 9, "reference_id": uuid.uuid4().hex},
    )
    assert accepted.status_code == 202, accepted.text
    transaction_id = accepted.json()["id"]

    started = time.monotonic()
    response = client.get(f"/transactions/{transaction_id}", params={"wait": 2})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 2 <= elapsed < 10

    # The task message has waited in the broker: a worker started now applies it.
    api_only.start_worker()
    assert outcome_of(client, transaction_id)["status"] == "applied"


def test_submission_wait_ends_at_its_bound_too(api_only: Stack, tenant: TenantFixture) -> None:
    for worker in list(api_only.workers):
        api_only.kill_worker(worker)
    client = api_only.client(tenant.api_key)

    started = time.monotonic()
    response = client.post(
        "/wallets/topup?wait=2",
        {"user_id": "mia", "asset_code": "EUR", "amount": 9, "reference_id": uuid.uuid4().hex},
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert 2 <= elapsed < 10
    api_only.start_worker()
    assert outcome_of(client, response.json()["id"])["status"] == "applied"
