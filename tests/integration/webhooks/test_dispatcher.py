"""The dispatcher against a real HTTP receiver and the real database, in this process."""

from __future__ import annotations

import itertools
import uuid

from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from ledger.db import unit_of_work
from ledger.feed import read_feed
from ledger.queries import get_transaction
from ledger.webhooks.dispatch import AttemptResult, claim_due, record_attempt
from tests.conftest import secret_box
from tests.integration.ledger.helpers import run
from tests.integration.webhooks.helpers import register
from tests.support.stack import eventually


def deliveries(engine, endpoint_id):
    with engine.connect() as conn:
        return (
            conn.execute(
                text(
                    "SELECT * FROM webhook_deliveries WHERE endpoint_id = :id"
                    " ORDER BY created_at, id"
                ),
                {"id": endpoint_id},
            )
            .mappings()
            .all()
        )


def attempts(engine, delivery_id):
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT * FROM webhook_attempts WHERE delivery_id = :id ORDER BY id"),
                {"id": delivery_id},
            )
            .mappings()
            .all()
        )


def settled(engine, endpoint_id, count=1):
    rows = deliveries(engine, endpoint_id)
    done = [r for r in rows if r["status"] in {"delivered", "failed"}]
    return rows if len(done) >= count else None


def test_an_applied_transaction_is_delivered_signed_with_its_status_view(
    engine, tenant, receiver, start_dispatcher
):
    endpoint = register(engine, tenant.id, receiver.url("main"))
    start_dispatcher()

    view = run(engine, tenant.id, "topup", user_id="ann", amount=250)

    (request,) = receiver.wait_for_count("main", 1)
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "transaction.applied"
    assert payload["data"] == view
    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="delivered")
    assert delivery["status"] == "delivered"
    assert request.webhook_id == f"msg_{delivery['event_id'].hex}"
    assert [a["status_code"] for a in attempts(engine, delivery["id"])] == [200]


def test_an_amount_beyond_64_bits_is_delivered_as_an_exact_json_integer(
    engine, tenant, receiver, start_dispatcher
):
    endpoint = register(engine, tenant.id, receiver.url("main"))
    start_dispatcher()
    amount = 2**100 + 7

    view = run(engine, tenant.id, "topup", user_id="ann", amount=amount)

    (request,) = receiver.wait_for_count("main", 1)
    assert f'"amount":{amount},'.encode() in request.body
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["data"]["amount"] == payload["data"]["balance_after"] == amount
    assert payload["data"] == view


def test_failures_are_retried_on_the_schedule_then_the_delivery_fails(
    engine, tenant, receiver, start_dispatcher
):
    receiver.answer("down", then=500)
    endpoint = register(engine, tenant.id, receiver.url("down"))
    start_dispatcher(webhook_retry_schedule=(0, 1, 1))

    run(engine, tenant.id, "topup", user_id="ann", amount=1)

    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="failed")
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    logged = attempts(engine, delivery["id"])
    assert [(a["attempt"], a["status_code"]) for a in logged] == [(1, 500), (2, 500), (3, 500)]
    # One second between attempts, as scheduled (lower bound only: the machine may be slow).
    gaps = [b["attempted_at"] - a["attempted_at"] for a, b in itertools.pairwise(logged)]
    assert all(gap.total_seconds() >= 0.9 for gap in gaps), gaps
    assert len({r.webhook_id for r in receiver.received("down")}) == 1


def test_retry_after_is_honoured(engine, tenant, receiver, start_dispatcher):
    receiver.answer("busy", (503, {"Retry-After": "2"}, b"busy"), then=200)
    endpoint = register(engine, tenant.id, receiver.url("busy"))
    start_dispatcher(webhook_retry_schedule=(0, 0))

    run(engine, tenant.id, "topup", user_id="ann", amount=1)

    receiver.wait_for_count("busy", 1)
    first, second = receiver.received("busy")
    assert second.arrived_at - first.answered_at >= 1.9
    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="delivered")
    assert delivery["status"] == "delivered"


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    engine, tenant, receiver, start_dispatcher
):
    receiver.answer("moved", then=(302, {"Location": receiver.url("elsewhere")}, b""))
    endpoint = register(engine, tenant.id, receiver.url("moved"))
    start_dispatcher(webhook_retry_schedule=(0,))

    run(engine, tenant.id, "topup", user_id="ann", amount=1)

    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="failed")
    assert (delivery["status"], delivery["last_status_code"]) == ("failed", 302)
    assert receiver.received("elsewhere") == []


def test_response_bodies_are_stored_truncated(engine, tenant, receiver, start_dispatcher):
    receiver.answer("chatty", then=(500, {}, b"x" * 100_000))
    endpoint = register(engine, tenant.id, receiver.url("chatty"))
    start_dispatcher(webhook_retry_schedule=(0,))

    run(engine, tenant.id, "topup", user_id="ann", amount=1)

    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="failed")
    (attempt,) = attempts(engine, delivery["id"])
    assert attempt["response_body"] == "x" * 1024


def test_an_expired_lease_is_claimed_again_and_a_late_result_changes_nothing(
    engine, tenant, receiver
):
    endpoint = register(engine, tenant.id, receiver.url("lease"))
    run(engine, tenant.id, "topup", user_id="ann", amount=1)
    (delivery,) = deliveries(engine, endpoint["id"])

    # A dispatcher claims it and dies before sending anything.
    def claim(lease_seconds):
        with unit_of_work(engine) as work:
            claimed = claim_due(
                work,
                box=secret_box(),
                limit=1000,
                room_for=lambda _: 1000,
                full=[],
                lease_seconds=lease_seconds,
            )
        return next((c for c in claimed if c.id == delivery["id"]), None)

    lost = eventually(lambda: claim(0.5), what="the first claim")
    assert claim(0.5) is None  # leased: nobody else may take it meanwhile
    retaken = eventually(lambda: claim(30), what="the lease to expire")
    assert (lost.attempt, retaken.attempt) == (1, 2)

    with unit_of_work(engine) as work:
        ok = AttemptResult(attempted_at=delivery["created_at"], latency_ms=5, status_code=204)
        assert record_attempt(work, retaken, ok, (0, 1, 1)) == "delivered"
        late = AttemptResult(attempted_at=delivery["created_at"], latency_ms=9, status_code=500)
        record_attempt(work, lost, late, (0, 1, 1))

    (after,) = deliveries(engine, endpoint["id"])
    assert after["status"] == "delivered"
    assert [a["status_code"] for a in attempts(engine, delivery["id"])] == [204, 500]


def test_a_hanging_endpoint_does_not_hold_up_a_healthy_one(
    engine, tenant, receiver, start_dispatcher
):
    receiver.answer("hang", then="hang")
    hanging = register(engine, tenant.id, receiver.url("hang"))
    register(engine, tenant.id, receiver.url("healthy"))
    start_dispatcher(webhook_retry_schedule=(0, 1, 1, 1, 1, 1), webhook_concurrency=16)

    for i in range(10):
        run(engine, tenant.id, "topup", user_id=f"u{i}", amount=1)

    receiver.wait_for_count("healthy", 10, timeout=30)
    assert all(d["status"] != "delivered" for d in deliveries(engine, hanging["id"]))

    def cut_off():
        rows = [a for d in deliveries(engine, hanging["id"]) for a in attempts(engine, d["id"])]
        return rows if rows else None

    timed_out = eventually(cut_off, what="a hanging attempt to be cut off")
    assert all(a["error"] == "timed out after 1.0s" for a in timed_out)
    assert all(900 <= a["latency_ms"] < 5000 for a in timed_out)


def test_410_disables_the_endpoint_and_fails_what_waits_for_it(
    engine, tenant, receiver, start_dispatcher
):
    receiver.answer("gone", then=410)
    endpoint = register(engine, tenant.id, receiver.url("gone"))
    run(engine, tenant.id, "topup", user_id="ann", amount=1)
    run(engine, tenant.id, "topup", user_id="bob", amount=1)
    start_dispatcher()

    rows = eventually(lambda: settled(engine, endpoint["id"], 2), what="both settled")
    assert {r["status"] for r in rows} == {"failed"}
    with engine.connect() as conn:
        enabled, reason = conn.execute(
            text("SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = :id"),
            {"id": endpoint["id"]},
        ).one()
    assert (enabled, reason) == (False, "the endpoint answered 410 Gone")

    run(engine, tenant.id, "topup", user_id="cat", amount=1)
    assert len(deliveries(engine, endpoint["id"])) == 2


def test_a_private_target_is_refused_at_delivery_time(engine, tenant, receiver, start_dispatcher):
    # Registered while private targets were allowed; the dispatcher no longer allows them.
    endpoint = register(engine, tenant.id, receiver.url("private"))
    start_dispatcher(webhook_allow_private_targets=False, webhook_retry_schedule=(0,))

    run(engine, tenant.id, "topup", user_id="ann", amount=1)

    (delivery,) = eventually(lambda: settled(engine, endpoint["id"]), what="failed")
    (attempt,) = attempts(engine, delivery["id"])
    assert attempt["status_code"] is None
    assert attempt["error"] == (
        "refused: 127.0.0.1 is a loopback, private, link-local, multicast or reserved address"
    )
    assert receiver.received("private") == []


def test_the_data_matches_the_status_endpoint_for_a_rejection(
    engine, tenant, receiver, start_dispatcher
):
    endpoint = register(engine, tenant.id, receiver.url("rejections"), ["transaction.rejected"])
    start_dispatcher()

    run(engine, tenant.id, "topup", user_id="ann", amount=10)
    rejected = run(engine, tenant.id, "spend", user_id="ann", amount=11)

    (request,) = receiver.wait_for_count("rejections", 1)
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    with engine.connect() as conn:
        status = get_transaction(conn, tenant.id, transaction_id=uuid.UUID(rejected["id"]))
    assert payload["type"] == "transaction.rejected"
    assert payload["data"] == status
    assert payload["data"]["result"]["code"] == "insufficient_funds"


def test_a_delivery_carries_its_events_cursor_and_the_wallets_sequence(
    engine, tenant, receiver, start_dispatcher
):
    endpoint = register(engine, tenant.id, receiver.url("main"))
    start_dispatcher()

    run(engine, tenant.id, "topup", user_id="ann", amount=250)
    view = run(engine, tenant.id, "transfer", user_id="ann", to_user_id="bo", amount=50)

    requests = receiver.wait_for_count("main", 2)
    payloads = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in requests]
    (transfer,) = [p for p in payloads if p["data"]["id"] == view["id"]]
    assert transfer["data"]["wallets"] == [
        {"user_id": "ann", "asset_code": "EUR", "sequence": 2, "balance_after": 200},
        {"user_id": "bo", "asset_code": "EUR", "sequence": 1, "balance_after": 50},
    ]
    with engine.connect() as conn:
        feed = eventually(
            lambda: len(read_feed(conn, tenant.id)["events"]) == 2 and read_feed(conn, tenant.id)
        )
    assert sorted(p["cursor"] for p in payloads) == sorted(e["cursor"] for e in feed["events"])
