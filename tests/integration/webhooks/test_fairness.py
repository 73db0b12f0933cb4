"""Tenants take turns: one tenant's backlog does not delay another tenant's webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from ledger.db import unit_of_work
from ledger.tenants import create_tenant
from ledger.webhooks.dispatch import claim_due
from tally.webhook_receiver import HANG
from tests.conftest import secret_box
from tests.integration.webhooks.helpers import register

BACKLOG = 500
ENDPOINTS = 5
NOWHERE = "http://127.0.0.1:9/hooks"


@pytest.fixture
def quiet_tenant(engine) -> uuid.UUID:
    with unit_of_work(engine) as work:
        return create_tenant(work, f"quiet-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def finish_leftovers(engine) -> Iterator[list[uuid.UUID]]:
    """Tenants whose unsent deliveries are failed at the end, so later tests don't send them."""
    tenants: list[uuid.UUID] = []
    yield tenants
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(
                "UPDATE webhook_deliveries SET status = 'failed', updated_at = now()"
                " WHERE tenant_id = ANY(:tenants) AND status IN ('pending', 'sending')"
            ),
            {"tenants": tenants},
        )


def queue_due(engine, tenant_id, endpoint_ids, count, *, age: str) -> list[uuid.UUID]:
    """`count` deliveries spread over the endpoints, due since about `age` ago, oldest first."""
    with unit_of_work(engine) as work:
        return list(
            work.connection.execute(
                text(
                    """
                    INSERT INTO webhook_deliveries
                        (tenant_id, endpoint_id, event_type, payload, next_attempt_at)
                    SELECT :tenant_id, endpoints[1 + i % cardinality(endpoints)], 'webhook.test',
                           '{}', now() - CAST(:age AS interval) + i * interval '1 millisecond'
                    FROM generate_series(0, :count - 1) AS i,
                         CAST(:endpoints AS uuid[]) AS endpoints
                    RETURNING id
                    """
                ),
                {
                    "tenant_id": tenant_id,
                    "endpoints": [uuid.UUID(str(e)) for e in endpoint_ids],
                    "count": count,
                    "age": age,
                },
            ).scalars()
        )


def test_one_claim_serves_every_tenant_with_due_deliveries(
    engine, tenant, quiet_tenant, finish_leftovers
):
    finish_leftovers += [tenant.id, quiet_tenant]
    busy = [register(engine, tenant.id, f"{NOWHERE}/busy-{i}")["id"] for i in range(ENDPOINTS)]
    quiet = register(engine, quiet_tenant, f"{NOWHERE}/quiet")["id"]
    # The busy tenant's whole backlog fell due before the quiet tenant's one delivery.
    queue_due(engine, tenant.id, busy, BACKLOG, age="2 hours")
    (waiting,) = queue_due(engine, quiet_tenant, [quiet], 1, age="1 hour")

    with unit_of_work(engine) as work:
        claimed = claim_due(
            work, box=secret_box(), limit=8, room_for=lambda _: 8, full=[], lease_seconds=60
        )

    assert waiting in {c.id for c in claimed}


def test_a_tenant_is_held_to_its_share_of_the_pool(engine, tenant, quiet_tenant, finish_leftovers):
    finish_leftovers += [tenant.id, quiet_tenant]
    busy = [register(engine, tenant.id, f"{NOWHERE}/capped-{i}")["id"] for i in range(ENDPOINTS)]
    queue_due(engine, tenant.id, busy, BACKLOG, age="2 hours")

    with unit_of_work(engine) as work:
        claimed = claim_due(
            work,
            box=secret_box(),
            limit=8,
            room_for=lambda _: 8,
            tenant_room_for=lambda t: 3 if t == tenant.id else 8,
            full=[],
            lease_seconds=60,
        )
        full = claim_due(
            work,
            box=secret_box(),
            limit=8,
            room_for=lambda _: 8,
            full=[],
            full_tenants=[tenant.id],
            lease_seconds=60,
        )

    assert len([c for c in claimed if c.tenant_id == tenant.id]) == 3
    # Endpoints take turns within the tenant too: three endpoints, one delivery each.
    assert len({c.endpoint_id for c in claimed if c.tenant_id == tenant.id}) == 3
    assert [c for c in full if c.tenant_id == tenant.id] == []


def test_a_tenant_with_a_slow_backlog_does_not_hold_up_another_tenants_webhooks(
    engine, tenant, quiet_tenant, receiver, start_dispatcher, finish_leftovers
):
    finish_leftovers += [tenant.id, quiet_tenant]
    names = [f"slow-{i}" for i in range(ENDPOINTS)]
    for name in names:
        receiver.answer(name, then=HANG)
    busy = [register(engine, tenant.id, receiver.url(name))["id"] for name in names]
    quiet = register(engine, quiet_tenant, receiver.url("quiet"))["id"]
    queue_due(engine, tenant.id, busy, BACKLOG, age="2 hours")
    queue_due(engine, quiet_tenant, [quiet], 1, age="1 hour")

    # Eight threads; every request of the busy tenant hangs far longer than we wait here.
    start_dispatcher(webhook_concurrency=8, webhook_timeout_seconds=30.0)

    receiver.wait_for_count("quiet", 1, timeout=5)

    def hanging() -> list[object]:
        return [r for r in receiver.requests if r.name in names]

    # The busy tenant is served meanwhile, with half the pool and no more.
    receiver.wait_until(lambda: len(hanging()) >= 4, timeout=5, what="the busy tenant's share")
    assert len(hanging()) == 4
    for name in names:
        receiver.answer(name, then=200)  # release the hanging requests
