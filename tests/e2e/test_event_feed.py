"""The event feed over HTTP: transactions submitted concurrently and applied by several
workers, while a reader polls GET /events from its last cursor; at the end it has read
every event once, in the feed's order. Runs once per broker."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, text

from tests.conftest import TenantFixture
from tests.support.stack import Stack, eventually

SUBMITTERS = 8
PER_SUBMITTER = 25  # 200 transactions
USERS = 4


def submissions(index: int) -> list[tuple[str, dict[str, Any]]]:
    """A submitter's top-ups of its user, and transfers from it to the next one."""
    me, next_one = f"u{index % USERS}", f"u{(index + 1) % USERS}"
    calls = []
    for number in range(PER_SUBMITTER):
        body: dict[str, Any] = {"asset_code": "EUR", "reference_id": uuid.uuid4().hex}
        if number % 2 == 0:
            calls.append(("/wallets/topup", {**body, "user_id": me, "amount": 10}))
        else:
            calls.append(
                (
                    "/transactions",
                    {
                        **body,
                        "type": "transfer",
                        "user_id": me,
                        "to_user_id": next_one,
                        "amount": 3,
                    },
                )
            )
    return calls


def test_a_reader_polling_the_feed_over_http_reads_every_event_once(
    stack: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    stack.start_worker(concurrency=2, relay=False)
    done = threading.Event()
    seen: list[dict[str, Any]] = []
    cursor: list[str | None] = [None]
    reader_client = stack.client(tenant.api_key)

    def poll() -> int:
        params: dict[str, Any] = {"limit": 23}
        if cursor[0] is not None:
            params["after"] = cursor[0]
        response = reader_client.get("/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(page["events"])
        assert page["next_cursor"] == (
            page["events"][-1]["cursor"] if page["events"] else cursor[0]
        )
        cursor[0] = page["next_cursor"]
        return len(page["events"])

    def read() -> None:
        while not done.is_set():
            if poll() == 0:
                done.wait(0.05)  # a poll interval, as a consumer's: nothing waits on a race

    def submit(index: int) -> list[str]:
        client = stack.client(tenant.api_key)
        ids = []
        for path, body in submissions(index):
            response = client.post(path, body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    with ThreadPoolExecutor(SUBMITTERS + 1) as pool:
        reader = pool.submit(read)
        try:
            futures = [pool.submit(submit, n) for n in range(SUBMITTERS)]
            ids = [i for future in futures for i in future.result()]
            client = stack.client(tenant.api_key)
            for transaction_id in ids:
                client.wait_final(transaction_id)
        finally:
            done.set()
        reader.result()

    with engine.connect() as conn:
        expected = [
            str(row.id)
            for row in conn.execute(
                text("SELECT id FROM events WHERE tenant_id = :t ORDER BY xid, position"),
                {"t": tenant.id},
            )
        ]
    assert len(expected) == SUBMITTERS * PER_SUBMITTER
    eventually(lambda: poll() == 0 and len(seen) >= len(expected), 60, "the feed to catch up")
    assert [event["id"] for event in seen] == expected
    assert {event["data"]["id"] for event in seen} == set(ids)
