"""A delivering worker killed with SIGKILL mid-burst: every event still arrives."""

from __future__ import annotations

import pytest

from tally.webhook_receiver import WebhookReceiver
from tests.e2e.webhook_helpers import deliveries, register, submit, webhook_stack
from tests.support.stack import eventually

BURST = 150


@pytest.fixture(scope="module")
def stack(database_url, redis_url, tmp_path_factory):
    with webhook_stack(
        database_url, redis_url, tmp_path_factory.mktemp("webhooks-crash"), worker=True
    ) as stack:
        yield stack


def test_a_worker_killed_mid_burst_loses_no_delivery(stack, tenant):
    client = stack.client(tenant.admin_api_key)
    with WebhookReceiver() as receiver:
        # A slow receiver keeps the burst going for seconds, with deliveries in flight.
        receiver.answer("burst", then=200, delay=0.1)
        endpoint = register(client, receiver.url("burst"))
        submitted = {submit(client, "topup", f"burst-{i}", 1) for i in range(BURST)}

        receiver.wait_until(lambda: len(receiver.received("burst")) >= 20, what="the burst")
        (worker,) = stack.workers
        stack.kill_worker(worker)  # SIGKILL: Celery, its pool, the relay and its dispatcher
        before = {r.payload["data"]["id"] for r in receiver.received("burst")}
        assert len(before) < BURST, "the burst was over before the kill"

        stack.start_worker()
        receiver.wait_until(
            lambda: {r.payload["data"]["id"] for r in receiver.delivered("burst")} >= submitted,
            timeout=180,
            what="every event after the restart",
        )

        def all_delivered():
            items = deliveries(client, endpoint["id"])
            return (
                items
                if len(items) == BURST and all(d["status"] == "delivered" for d in items)
                else None
            )

        items = eventually(all_delivered, timeout=60, what="every delivery settled")
        received = receiver.received("burst")
        assert {d["message_id"] for d in items} == {r.webhook_id for r in received}
