"""On RabbitMQ, Tally's queue is a quorum queue (docs/operations.md#broker-durability),
declared idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection

from tests.conftest import TenantFixture
from tests.support.rabbitmq import declared_type_refusal, queue_counts
from tests.support.stack import Stack, outcome_of, stack_env
from worker.celery_app import broker_queue_name, quorum_queue


def topup(user_id: str) -> dict[str, object]:
    return {"user_id": user_id, "asset_code": "EUR", "amount": 5, "reference_id": uuid.uuid4().hex}


def declare_as_tally_does(amqp_url: str, name: str) -> tuple[int, int]:
    """Declare the queue with Tally's own definition; its (message, consumer) counts."""
    with Connection(amqp_url, connect_timeout=3) as connection:
        declared = quorum_queue(name)(connection.default_channel).declare()
    assert declared == name
    return queue_counts(amqp_url, name)


@pytest.fixture(scope="module")
def rabbitmq_stack(
    database_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(
        database_url,
        amqp_url,
        tmp_path_factory.mktemp("rabbitmq-stack-logs"),
        stack_env(database_url, amqp_url),
    )
    stack.start_api()
    stack.start_worker()
    yield stack
    stack.stop()


def test_the_queue_tally_consumes_on_rabbitmq_is_a_quorum_queue(
    rabbitmq_stack: Stack, amqp_url: str, tenant: TenantFixture
) -> None:
    client = rabbitmq_stack.client(tenant.api_key)
    accepted = client.post("/wallets/topup", topup("quorum"))
    assert outcome_of(client, accepted.json()["id"])["status"] == "applied"
    name = broker_queue_name(amqp_url, rabbitmq_stack.env["TALLY_QUEUE"])

    refusal = declared_type_refusal(amqp_url, name, "classic")

    assert refusal is not None, f"{name} accepted a classic declare: it is not a quorum queue"
    assert "PRECONDITION_FAILED" in refusal and "current is 'quorum'" in refusal, refusal
    assert declared_type_refusal(amqp_url, name, "quorum") is None


def test_declaring_the_queue_again_is_harmless(
    rabbitmq_stack: Stack, amqp_url: str, tenant: TenantFixture
) -> None:
    name = broker_queue_name(amqp_url, rabbitmq_stack.env["TALLY_QUEUE"])

    first = declare_as_tally_does(amqp_url, name)
    second = declare_as_tally_does(amqp_url, name)

    # The worker still consumes it, and still applies what the API publishes into it.
    assert first[1] >= 1 and second[1] >= 1, (first, second)
    client = rabbitmq_stack.client(tenant.api_key)
    accepted = client.post("/wallets/topup", topup("again"))
    assert outcome_of(client, accepted.json()["id"])["status"] == "applied"
