"""Whatever happens while sending, an attempt is recorded and the retry schedule goes on.

Receivers answer with bytes PostgreSQL text cannot hold, senders raise, recording fails:
each delivery still gets its attempt row and moves to retrying, delivered or failed, never
staying `sending` to be re-sent each time its lease expires.
"""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

from sqlalchemy import text

from ledger.db import unit_of_work
from ledger.webhooks.deliveries import send_test_event
from ledger.webhooks.dispatch import AttemptResult, ClaimedDelivery, record_attempt
from tests.integration.webhooks.helpers import register
from tests.support.stack import eventually

# Long enough to be sure nothing settles a delivery that today's code leaves `sending`,
# short enough for a failing run; each wait below ends as soon as the delivery settles.
SETTLE_TIMEOUT = 20.0


@contextmanager
def raw_receiver(answer: bytes) -> Iterator[str]:
    """A loopback server answering every request with exactly these bytes; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                head, _, body = request.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                with suppress(OSError):
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/raw"
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def queue_test_event(engine, tenant_id, endpoint) -> uuid.UUID:
    with unit_of_work(engine) as work:
        delivery = send_test_event(work, tenant_id, uuid.UUID(str(endpoint["id"])))
    return uuid.UUID(delivery["id"])


def delivery(engine, delivery_id):
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT * FROM webhook_deliveries WHERE id = :id"), {"id": delivery_id}
            )
            .mappings()
            .one()
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


def leased(tenant_id, endpoint, delivery_id) -> ClaimedDelivery:
    """The delivery as a dispatcher holds it after its first claim."""
    return ClaimedDelivery(
        id=delivery_id,
        tenant_id=tenant_id,
        endpoint_id=uuid.UUID(str(endpoint["id"])),
        attempt=1,
        message_id="msg_test",
        url=str(endpoint["url"]),
        enabled=True,
        secrets=("whsec_test",),
        body=b"{}",
    )


def settled_after(engine, delivery_id, count):
    """The delivery once `count` attempts are logged and it is no longer being sent."""

    def check():
        row = delivery(engine, delivery_id)
        if row["status"] == "sending" or len(attempts(engine, delivery_id)) < count:
            return None
        return row

    return eventually(check, timeout=SETTLE_TIMEOUT, what=f"{count} recorded attempts")


def test_a_nul_in_the_reason_phrase_is_stored_stripped_and_the_retry_is_scheduled(
    engine, tenant, start_dispatcher
):
    with raw_receiver(b"HTTP/1.1 500 Bad\x00Thing\r\nContent-Length: 2\r\n\r\nno") as url:
        endpoint = register(engine, tenant.id, url)
        delivery_id = queue_test_event(engine, tenant.id, endpoint)
        start_dispatcher(webhook_retry_schedule=(0, 3600))

        row = settled_after(engine, delivery_id, 1)

    assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 500)
    assert row["last_error"] == "HTTP 500 BadThing"
    assert row["next_attempt_at"] > datetime.now(UTC)
    ((attempt_status, body),) = [
        (a["status_code"], a["response_body"]) for a in attempts(engine, delivery_id)
    ]
    assert (attempt_status, body) == (500, "no")


def test_a_nul_in_an_error_body_is_stored_stripped_and_the_delivery_fails_when_the_schedule_ends(
    engine, tenant, receiver, start_dispatcher
):
    receiver.answer("nul", then=(500, {}, b"bad\x00news"))
    endpoint = register(engine, tenant.id, receiver.url("nul"))
    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    start_dispatcher(webhook_retry_schedule=(0, 0))

    row = settled_after(engine, delivery_id, 2)

    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"] == "HTTP 500 Internal Server Error"
    logged = attempts(engine, delivery_id)
    assert [(a["attempt"], a["status_code"], a["response_body"]) for a in logged] == [
        (1, 500, "badnews"),
        (2, 500, "badnews"),
    ]


def test_a_nul_in_a_successful_answer_still_delivers(engine, tenant, receiver, start_dispatcher):
    receiver.answer("nul-ok", then=(200, {}, b"\x00ok\x00"))
    endpoint = register(engine, tenant.id, receiver.url("nul-ok"))
    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    start_dispatcher()

    row = settled_after(engine, delivery_id, 1)

    assert row["status"] == "delivered"
    assert [a["response_body"] for a in attempts(engine, delivery_id)] == ["ok"]
    assert len(receiver.received("nul-ok")) == 1


def test_text_postgresql_cannot_store_is_stripped_and_truncated_when_recorded(engine, tenant):
    endpoint = register(engine, tenant.id, "http://127.0.0.1:9/hooks/unstorable")
    answered_id = queue_test_event(engine, tenant.id, endpoint)
    errored_id = queue_test_event(engine, tenant.id, endpoint)
    with unit_of_work(engine) as work:
        work.connection.execute(
            text("UPDATE webhook_deliveries SET status = 'sending', attempts = 1 WHERE id = :id"),
            [{"id": answered_id}, {"id": errored_id}],
        )
    now = datetime.now(UTC)
    answered = AttemptResult(now, 3, status_code=503, response_body="a\x00b\udfffc" + "x" * 5000)
    errored = AttemptResult(now, 3, error="reset by \ud800peer\x00" + "!" * 900)

    with unit_of_work(engine) as work:
        for delivery_id, result in ((answered_id, answered), (errored_id, errored)):
            claimed = leased(tenant.id, endpoint, delivery_id)
            assert record_attempt(work, claimed, result, (0, 60)) == "pending"

    (answered_row,) = attempts(engine, answered_id)
    assert answered_row["response_body"] == ("abc" + "x" * 5000)[:1024]
    (errored_row,) = attempts(engine, errored_id)
    assert errored_row["error"] == ("reset by peer" + "!" * 900)[:500]
    assert delivery(engine, errored_id)["last_error"] == errored_row["error"]


def test_an_exception_in_the_sender_is_an_attempt_on_the_schedule(engine, tenant, start_dispatcher):
    def broken_sender(*args, **kwargs):
        raise RuntimeError("the sender broke\x00 here")

    endpoint = register(engine, tenant.id, "http://127.0.0.1:9/hooks/broken-sender")
    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    start_dispatcher(webhook_retry_schedule=(0, 0), send=broken_sender)

    row = settled_after(engine, delivery_id, 2)

    assert (row["status"], row["attempts"]) == ("failed", 2)
    errors = [(a["status_code"], a["error"]) for a in attempts(engine, delivery_id)]
    assert errors == [(None, "internal error: RuntimeError: the sender broke here")] * 2


def test_an_answer_the_http_client_chokes_on_is_an_attempt_on_the_schedule(
    engine, tenant, receiver, start_dispatcher
):
    # "²" passes str.isdigit() but is no number: parsing it raised out of the sender.
    receiver.answer("odd-retry-after", then=(503, {"Retry-After": "²"}, b"later"))
    endpoint = register(engine, tenant.id, receiver.url("odd-retry-after"))
    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    start_dispatcher(webhook_retry_schedule=(0, 0))

    row = settled_after(engine, delivery_id, 2)

    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 2, 503)
    assert [a["status_code"] for a in attempts(engine, delivery_id)] == [503, 503]


def test_a_failure_to_record_an_answer_is_still_an_attempt_on_the_schedule(
    engine, tenant, receiver, start_dispatcher, monkeypatch
):
    import worker.webhook_dispatcher as dispatcher_module

    calls = []
    ours: list[str] = []

    def record_fails_first(conn, claimed, result, schedule):
        # Only this test's delivery: the database may hold other tests' due deliveries.
        if str(claimed.id) in ours:
            calls.append(result)
            if len(calls) == 1:
                raise RuntimeError("recording failed")
        return record_attempt(conn, claimed, result, schedule)

    monkeypatch.setattr(dispatcher_module, "record_attempt", record_fails_first)
    receiver.answer("unrecorded", then=500)
    endpoint = register(engine, tenant.id, receiver.url("unrecorded"))
    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    ours.append(str(delivery_id))
    start_dispatcher(webhook_retry_schedule=(0, 3600))

    row = settled_after(engine, delivery_id, 1)

    assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 500)
    (attempt,) = attempts(engine, delivery_id)
    assert attempt["status_code"] == 500
    assert attempt["error"] == "the answer could not be recorded: RuntimeError"
    assert len(receiver.received("unrecorded")) == 1


def test_a_url_with_non_ascii_characters_is_stored_percent_encoded_and_receives_deliveries(
    engine, tenant, receiver, start_dispatcher
):
    endpoint = register(engine, tenant.id, receiver.url("hoöks-ü") + "?q=é")

    expected = f"http://127.0.0.1:{receiver.port}/hooks/ho%C3%B6ks-%C3%BC?q=%C3%A9"
    assert endpoint["url"] == expected
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT url FROM webhook_endpoints WHERE id = :id"), {"id": endpoint["id"]}
        ).scalar_one()
    assert stored == expected

    delivery_id = queue_test_event(engine, tenant.id, endpoint)
    start_dispatcher()

    (request,) = receiver.wait_for_count("hoöks-ü", 1, timeout=SETTLE_TIMEOUT)
    assert request.path == "/hooks/ho%C3%B6ks-%C3%BC?q=%C3%A9"
    assert settled_after(engine, delivery_id, 1)["status"] == "delivered"
