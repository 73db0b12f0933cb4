"""Deliveries are written by the outbox, in the commit that finishes the transaction."""

import uuid

import pytest
from sqlalchemy import text

from ledger.assets import create_asset
from ledger.db import UnitOfWork, unit_of_work
from ledger.posting import apply_claimed
from ledger.tenants import create_tenant
from ledger.webhooks.endpoints import update_endpoint
from tests.integration.ledger.helpers import apply, run, submit
from tests.integration.webhooks.helpers import register

URL = "http://127.0.0.1:9/hooks/fan-out"


def deliveries_of(engine, endpoint_id):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT d.event_type, e.transaction_id, d.status FROM webhook_deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = :id"
                " ORDER BY d.created_at"
            ),
            {"id": endpoint_id},
        ).all()


def test_each_subscribed_endpoint_gets_one_pending_delivery_per_event(engine, tenant):
    everything = register(engine, tenant.id, URL)
    rejections = register(engine, tenant.id, URL, ["transaction.rejected"])

    applied = run(engine, tenant.id, "topup", user_id="ann", amount=100)
    rejected = run(engine, tenant.id, "spend", user_id="ann", amount=1000)

    assert [(t, str(x), s) for t, x, s in deliveries_of(engine, everything["id"])] == [
        ("transaction.applied", applied["id"], "pending"),
        ("transaction.rejected", rejected["id"], "pending"),
    ]
    assert [(t, str(x)) for t, x, _ in deliveries_of(engine, rejections["id"])] == [
        ("transaction.rejected", rejected["id"])
    ]


def test_disabled_endpoints_and_other_tenants_get_nothing(engine, tenant):
    disabled = register(engine, tenant.id, URL)
    with unit_of_work(engine) as work:
        update_endpoint(work, tenant.id, uuid.UUID(disabled["id"]), {"enabled": False})
        other_tenant = create_tenant(work, "other")
        create_asset(work, other_tenant, "EUR", "Euro", 2)
    others = register(engine, other_tenant, URL)

    run(engine, tenant.id, "topup", user_id="bob", amount=100)

    assert deliveries_of(engine, disabled["id"]) == []
    assert deliveries_of(engine, others["id"]) == []


def test_a_batch_that_rolls_back_leaves_neither_event_nor_delivery(engine, tenant):
    endpoint = register(engine, tenant.id, URL)
    submission = submit(engine, tenant.id, "topup", user_id="cat", amount=100)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), unit_of_work(engine) as work:
        result = apply_claimed(work.connection, [submission.id])
        assert result.status_of(submission.id) == "applied"
        raise Abort

    with engine.connect() as conn:
        events = conn.execute(
            text("SELECT count(*) FROM events WHERE transaction_id = :id"), {"id": submission.id}
        ).scalar_one()
    assert events == 0
    assert deliveries_of(engine, endpoint["id"]) == []

    apply(engine, submission.id)
    assert [t for t, _, _ in deliveries_of(engine, endpoint["id"])] == ["transaction.applied"]


def test_a_batch_of_many_transactions_fans_out_in_one_commit(engine, tenant):
    endpoint = register(engine, tenant.id, URL, ["transaction.applied"])
    ids = [submit(engine, tenant.id, "topup", user_id=f"u{i}", amount=1).id for i in range(50)]

    apply(engine, *ids)

    assert {x for _, x, _ in deliveries_of(engine, endpoint["id"])} == set(ids)


def test_an_endpoint_being_edited_does_not_stall_posting(engine, tenant, database_url):
    """The outbox insert references the endpoint row; an open edit must not block batches
    that hold hot account locks (FOR NO KEY UPDATE, not FOR UPDATE)."""
    from ledger.db import make_engine
    from ledger.posting import post_transactions

    endpoint = register(engine, tenant.id, URL)
    submission = submit(engine, tenant.id, "topup", user_id="ann", amount=100)
    # If the batch had to wait for the edit, it would hit this timeout and raise.
    impatient = make_engine(database_url, pool_size=1, statement_timeout_ms=3000)
    editing = engine.connect()
    try:
        editing.begin()
        update_endpoint(
            UnitOfWork(editing),  # left open: the edit is under way
            tenant.id,
            uuid.UUID(str(endpoint["id"])),
            {"description": "being edited"},
            allow_private=True,
        )
        result = post_transactions(impatient, [submission.id])
        assert [o.status for o in result.outcomes] == ["applied"]
    finally:
        editing.rollback()
        editing.close()
        impatient.dispose()
    assert [row.event_type for row in deliveries_of(engine, endpoint["id"])] == [
        "transaction.applied"
    ]
