"""Upgrading from the classic RabbitMQ queue of an earlier Tally: the quorum queue has a name
of its own, so the classic one stops nothing, and what its messages named is applied
through the relay (docs/operations.md#upgrading-from-the-classic-queue).

No other worker or relay may run meanwhile (they would apply the rows this test leaves
queued): it has a module of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection
from sqlalchemy import Engine

from tests.conftest import TenantFixture
from tests.e2e.test_broker_outage_recovery import unreachable
from tests.support.rabbitmq import declared_type_refusal, queue_counts
from tests.support.stack import Stack, outcome_of, stack_env, start_api_degraded, status_counts
from worker.celery_app import APPLY_TASK

SUBMISSIONS = 10


def topup(user_id: str) -> dict[str, object]:
    return {"user_id": user_id, "asset_code": "EUR", "amount": 5, "reference_id": uuid.uuid4().hex}


def publish_as_an_earlier_tally(amqp_url: str, queue: str, transaction_ids: list[str]) -> None:
    """What a Tally before quorum queues did: Celery's default, a classic queue named `queue`."""
    app = Celery("tally", broker=amqp_url, set_as_current=False)
    app.conf.update(task_default_queue=queue, task_serializer="json")
    for transaction_id in transaction_ids:
        app.send_task(APPLY_TASK, args=[[transaction_id]])
    app.close()


@pytest.fixture
def earlier_queue(amqp_url: str) -> Iterator[str]:
    """A TALLY_QUEUE whose plain name an earlier Tally left behind as a classic queue."""
    queue = f"tally-test-upgrade-{uuid.uuid4().hex[:10]}"
    yield queue
    with Connection(amqp_url, connect_timeout=3) as connection:
        connection.default_channel.queue_delete(queue)
        connection.default_channel.exchange_delete(queue)


def stack_in(log_dir: Path, database_url: str, broker_url: str, queue: str) -> Stack:
    log_dir.mkdir()
    env = stack_env(database_url, broker_url, TALLY_QUEUE=queue)
    return Stack(database_url, broker_url, log_dir, env)


def test_a_classic_queue_left_by_an_earlier_tally_stops_nothing_and_loses_nothing(
    database_url: str,
    amqp_url: str,
    earlier_queue: str,
    tenant: TenantFixture,
    engine: Engine,
    tmp_path: Path,
) -> None:
    # Accepted by the earlier Tally: committed queued, their messages in its classic queue
    # (here its API cannot publish at all, so the classic queue holds their only messages).
    earlier = stack_in(tmp_path / "earlier", database_url, unreachable(amqp_url), earlier_queue)
    start_api_degraded(earlier)
    try:
        client = earlier.client(tenant.api_key)
        ids = [client.post("/wallets/topup", topup("old")).json()["id"] for _ in range(SUBMISSIONS)]
    finally:
        earlier.stop()
    publish_as_an_earlier_tally(amqp_url, earlier_queue, ids)
    assert status_counts(engine, tenant.id) == {"queued": SUBMISSIONS}
    assert declared_type_refusal(amqp_url, earlier_queue, "quorum") is not None

    # The upgraded stack, on the same TALLY_QUEUE, starts beside the classic queue.
    upgraded = stack_in(tmp_path / "upgraded", database_url, amqp_url, earlier_queue)
    upgraded.start_api()
    worker = upgraded.start_worker()
    try:
        client = upgraded.client(tenant.api_key)
        new = client.post("/wallets/topup", topup("new")).json()["id"]
        outcomes = [outcome_of(client, transaction_id) for transaction_id in [*ids, new]]
        balance = client.get("/wallets/old/balance", params={"asset_code": "EUR"}).json()
        worker_log = (tmp_path / "upgraded" / f"{worker.celery}.log").read_text()
    finally:
        upgraded.stop()

    assert {outcome["status"] for outcome in outcomes} == {"applied"}
    assert status_counts(engine, tenant.id) == {"applied": SUBMISSIONS + 1}
    assert balance["balance"] == 5 * SUBMISSIONS
    # Applied through the relay: the classic queue was neither read nor changed.
    assert queue_counts(amqp_url, earlier_queue) == (SUBMISSIONS, 0)
    assert f"RabbitMQ still has the queue '{earlier_queue}' ({SUBMISSIONS} messages)" in worker_log
