"""Webhooks end to end: API and worker processes, Redis, PostgreSQL, a real HTTP receiver."""

from __future__ import annotations

from datetime import datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tally.webhook_receiver import HANG, WebhookReceiver
from tests.e2e.webhook_helpers import deliveries, register, submit, webhook_stack
from tests.support.stack import eventually


@pytest.fixture(scope="module")
def stack(database_url, redis_url, tmp_path_factory):
    with webhook_stack(database_url, redis_url, tmp_path_factory.mktemp("webhooks")) as stack:
        yield stack


@pytest.fixture
def receiver():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def client(stack, tenant):
    return stack.client(tenant.admin_api_key)


def settled(client, endpoint_id, count):
    items = deliveries(client, endpoint_id)
    done = [d for d in items if d["status"] in {"delivered", "failed"}]
    return items if len(done) >= count else None


def test_applied_and_rejected_events_verify_and_carry_the_status_view(client, receiver):
    endpoint = register(client, receiver.url("main"), description="books")
    applied = submit(client, "topup", "ann", 500)
    rejected = submit(client, "spend", "ann", 900)

    requests = receiver.wait_for_count("main", 2)

    by_type = {}
    for request in requests:
        # The package's own verifier, not the project's signer.
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        by_type[payload["type"]] = payload
    assert set(by_type) == {"transaction.applied", "transaction.rejected"}
    for kind, transaction_id in (("applied", applied), ("rejected", rejected)):
        status = client.wait_final(transaction_id)
        assert status["status"] == kind
        assert by_type[f"transaction.{kind}"]["data"] == status
    assert by_type["transaction.rejected"]["data"]["result"]["code"] == "insufficient_funds"


def test_two_failures_then_success_make_three_attempts_under_one_webhook_id(client, receiver):
    receiver.answer("flaky", 500, 500, then=200)
    endpoint = register(client, receiver.url("flaky"))
    submit(client, "topup", "bob", 100)

    (delivery,) = eventually(lambda: settled(client, endpoint["id"], 1), what="delivery")

    assert delivery["status"] == "delivered"
    assert delivery["attempt_count"] == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])
    requests = receiver.received("flaky")
    assert len(requests) == 3
    assert {r.webhook_id for r in requests} == {delivery["message_id"]}
    assert len({r.body for r in requests}) == 1
    for request in requests:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)


def test_events_queued_while_the_receiver_is_down_are_all_delivered_when_it_returns(
    client, receiver
):
    endpoint = register(client, receiver.url("outage"))
    receiver.stop()
    submitted = {submit(client, "topup", f"user-{i}", 10) for i in range(10)}
    for transaction_id in submitted:
        client.wait_final(transaction_id)

    def all_refused_and_retrying():
        items = deliveries(client, endpoint["id"])
        refused = [
            d for d in items if any(a["error"] == "connection refused" for a in d["attempts"])
        ]
        return len(refused) == 10 and any(d["attempt_count"] >= 2 for d in items)

    eventually(all_refused_and_retrying, what="every delivery to meet the outage")
    receiver.start()

    receiver.wait_until(
        lambda: {r.payload["data"]["id"] for r in receiver.delivered("outage")} >= submitted,
        what="every event after the outage",
    )
    items = eventually(lambda: settled(client, endpoint["id"], 10), what="all settled")
    assert {d["status"] for d in items} == {"delivered"}


def test_a_hanging_receiver_is_cut_off_and_retried_while_a_healthy_one_keeps_receiving(
    client, receiver
):
    receiver.answer("stuck", then=HANG)
    stuck = register(client, receiver.url("stuck"))
    register(client, receiver.url("healthy"))

    submitted = {submit(client, "topup", f"h-{i}", 10) for i in range(5)}
    receiver.wait_until(
        lambda: {r.payload["data"]["id"] for r in receiver.delivered("healthy")} >= submitted,
        timeout=30,
        what="the healthy endpoint to receive everything",
    )

    def retried_after_timeouts():
        items = deliveries(client, stuck["id"])
        cut = [a for d in items for a in d["attempts"] if a["error"]]
        return items if len(cut) >= 2 and any(d["attempt_count"] >= 2 for d in items) else None

    items = eventually(retried_after_timeouts, what="timed-out attempts to be retried")
    assert not any(d["status"] == "delivered" for d in items)
    # While the stuck endpoint is still being retried, new events reach the healthy one.
    late = submit(client, "topup", "h-late", 10)
    receiver.wait_until(
        lambda: any(r.payload["data"]["id"] == late for r in receiver.delivered("healthy")),
        timeout=10,
        what="a new event at the healthy endpoint meanwhile",
    )
    assert not any(d["status"] == "delivered" for d in deliveries(client, stuck["id"]))
    for attempt in (a for d in items for a in d["attempts"] if a["error"]):
        assert attempt["error"] == "timed out after 1.0s"
        assert 900 <= attempt["latency_ms"] < 5000

    receiver.answer("stuck", then=200)
    items = eventually(lambda: settled(client, stuck["id"], 6), what="the stuck endpoint")
    assert {d["status"] for d in items} == {"delivered"}


def test_410_gone_disables_the_endpoint(client, receiver):
    receiver.answer("gone", then=410)
    gone = register(client, receiver.url("gone"))
    witness = register(client, receiver.url("witness"))
    submit(client, "topup", "gus", 10)

    (delivery,) = eventually(lambda: settled(client, gone["id"], 1), what="the 410")
    assert (delivery["status"], delivery["last_status_code"]) == ("failed", 410)
    endpoint = client.get(f"/webhook-endpoints/{gone['id']}").json()
    assert endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]

    later = submit(client, "topup", "gus", 10)
    receiver.wait_until(
        lambda: any(r.payload["data"]["id"] == later for r in receiver.delivered("witness")),
        what="the later event at the witness endpoint",
    )
    assert len(deliveries(client, gone["id"])) == 1
    assert len(deliveries(client, witness["id"])) == 2


def test_event_type_filters_are_respected(client, receiver):
    rejections = register(client, receiver.url("rejections"), event_types=["transaction.rejected"])
    everything = register(client, receiver.url("everything"))
    submit(client, "topup", "hal", 10)
    rejected = submit(client, "spend", "hal", 20)

    eventually(lambda: settled(client, everything["id"], 2), what="both events")

    (only,) = deliveries(client, rejections["id"])
    assert only["event_type"] == "transaction.rejected"
    (request,) = receiver.wait_for_count("rejections", 1)
    assert request.payload["data"]["id"] == rejected


def test_rotation_signs_with_both_secrets_during_the_overlap(client, receiver):
    endpoint = register(client, receiver.url("rotating"))
    old = endpoint["secret"]
    response = client.post(
        f"/webhook-endpoints/{endpoint['id']}/rotate-secret", {"overlap_seconds": 3600}
    )
    assert response.status_code == 200, response.text
    new = response.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert response.json()["previous_secret_expires_at"] is not None

    submit(client, "topup", "ivy", 10)
    (request,) = receiver.wait_for_count("rotating", 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)

    # Ending the overlap at once: only the newest secret signs.
    newest = client.post(
        f"/webhook-endpoints/{endpoint['id']}/rotate-secret", {"overlap_seconds": 0}
    ).json()["secret"]
    submit(client, "topup", "ivy", 10)
    _, last = receiver.wait_for_count("rotating", 2)
    Webhook(newest).verify(last.body, last.headers)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(last.body, last.headers)


def test_a_test_event_is_signed_and_delivered(client, receiver):
    endpoint = register(client, receiver.url("test"), event_types=["transaction.failed"])
    response = client.post(f"/webhook-endpoints/{endpoint['id']}/test", {})
    assert response.status_code == 202, response.text

    (request,) = receiver.wait_for_count("test", 1)
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == endpoint["id"]
    assert request.webhook_id == response.json()["message_id"]


def test_failed_deliveries_can_be_retried_one_by_one_or_recovered_since_a_time(client, receiver):
    receiver.answer("recover", then=(500, {}, b"x" * 5000))
    endpoint = register(client, receiver.url("recover"))
    before = datetime.now().astimezone().isoformat()
    submit(client, "topup", "jo", 10)
    submit(client, "topup", "jo", 20)

    failed = eventually(lambda: settled(client, endpoint["id"], 2), timeout=90, what="failure")
    assert {d["status"] for d in failed} == {"failed"}
    assert all(d["attempt_count"] == 8 for d in failed)
    assert all(len(a["response_body"]) == 1024 for d in failed for a in d["attempts"])
    assert all(d["next_attempt_at"] is None for d in failed)

    receiver.answer("recover", then=200)
    first, second = failed
    retried = client.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/{first['id']}/retry", {})
    assert retried.status_code == 202, retried.text

    def status_of(delivery_id):
        return client.get(f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}").json()

    eventually(lambda: status_of(first["id"])["status"] == "delivered", what="the retry")
    assert status_of(second["id"])["status"] == "failed"

    recovered = client.post(f"/webhook-endpoints/{endpoint['id']}/recover", {"since": before})
    assert recovered.status_code == 202, recovered.text
    assert recovered.json() == {"redelivered": 1}
    eventually(lambda: status_of(second["id"])["status"] == "delivered", what="the recovery")
    ids = {r.webhook_id for r in receiver.delivered("recover")}
    assert ids == {first["message_id"], second["message_id"]}


def test_cloud_metadata_urls_are_refused_even_with_private_targets_allowed(client):
    response = client.post("/webhook-endpoints", {"url": "http://169.254.169.254/latest/"})
    assert response.status_code == 422
    assert response.json()["code"] == "webhook_url_refused"


def test_a_url_with_non_ascii_characters_is_stored_percent_encoded_and_delivered_to(
    client, receiver
):
    endpoint = register(client, receiver.url("hoöks-ü") + "?q=é")
    assert endpoint["url"] == f"http://127.0.0.1:{receiver.port}/hooks/ho%C3%B6ks-%C3%BC?q=%C3%A9"
    assert client.get(f"/webhook-endpoints/{endpoint['id']}").json()["url"] == endpoint["url"]

    submit(client, "topup", "kim", 10)

    (request,) = receiver.wait_for_count("hoöks-ü", 1)
    assert request.path == "/hooks/ho%C3%B6ks-%C3%BC?q=%C3%A9"
    (delivery,) = eventually(lambda: settled(client, endpoint["id"], 1), what="delivery")
    assert delivery["status"] == "delivered"


def test_answers_with_nul_bytes_are_logged_stripped_and_retried_until_the_delivery_fails(
    client, receiver
):
    receiver.answer("nul", then=(500, {}, b"bad\x00news"))
    endpoint = register(client, receiver.url("nul"))
    submit(client, "topup", "lou", 10)

    (delivery,) = eventually(lambda: settled(client, endpoint["id"], 1), what="the failure")

    assert (delivery["status"], delivery["attempt_count"]) == ("failed", 8)
    assert [a["response_body"] for a in delivery["attempts"]] == ["badnews"] * 8
