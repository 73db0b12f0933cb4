"""An endpoint's health as the console shows it, from attempts the dispatcher's own
functions record (no dispatcher runs and nothing is sent)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.webhooks.deliveries import endpoint_health, send_test_event
from ledger.webhooks.dispatch import AttemptResult, claim_due, record_attempt
from ledger.webhooks.endpoints import create_endpoint
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console


def test_health_counts_attempts_successes_failures_and_backlog(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    with unit_of_work(engine) as work:
        endpoint = create_endpoint(
            work, tenant.id, box=secret_box(), url="http://127.0.0.1:9/h", allow_private=True
        )
        other = create_endpoint(
            work, tenant.id, box=secret_box(), url="http://127.0.0.1:9/o", allow_private=True
        )
        for _ in range(3):
            send_test_event(work, tenant.id, uuid.UUID(endpoint["id"]))
        send_test_event(work, tenant.id, uuid.UUID(other["id"]))
    with unit_of_work(engine) as work:
        claimed = [
            delivery
            for delivery in claim_due(
                work, box=secret_box(), limit=100, room_for=lambda _: 100, full=(), lease_seconds=60
            )
            if str(delivery.endpoint_id) == endpoint["id"]
        ][:2]
        now = datetime.now(UTC)
        # No retries in this schedule: the 500 fails the delivery for good.
        record_attempt(work, claimed[0], AttemptResult(now, 12, status_code=200), [])
        record_attempt(work, claimed[1], AttemptResult(now, 30, status_code=500), [])

    with engine.connect() as conn:
        health = endpoint_health(conn, tenant.id)
    page = admin.text(f"/webhooks/{endpoint['id']}")

    mine = health[endpoint["id"]]
    assert mine["attempts"] == 2 and mine["success_rate"] == 0.5
    assert mine["failed"] == 1 and mine["waiting"] == 1
    assert mine["last_failure_at"] is not None
    assert health[other["id"]]["waiting"] == 1 and health[other["id"]]["attempts"] == 0
    assert 'id="success-rate">50.0 %<' in page
