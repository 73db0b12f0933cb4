"""Helpers shared by the webhook end-to-end modules: a stack tuned for fast retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.stack import ApiClient, Stack, stack_env

# Eight attempts, like the production schedule, but seconds apart instead of hours.
FAST_SCHEDULE = "0,1,1,1,1,1,1,1"
TIMEOUT_SECONDS = "1"


@contextmanager
def webhook_stack(
    database_url: str, broker_url: str, log_dir: Path, *, worker: bool = True, **extra: str
) -> Iterator[Stack]:
    env = stack_env(
        database_url,
        broker_url,
        TALLY_WEBHOOK_RETRY_SCHEDULE=FAST_SCHEDULE,
        TALLY_WEBHOOK_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
        **extra,
    )
    stack = Stack(database_url, broker_url, log_dir, env)
    try:
        stack.start_api()
        if worker:
            stack.start_worker()
        yield stack
    finally:
        stack.stop()


def register(client: ApiClient, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/webhook-endpoints", {"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def submit(client: ApiClient, kind: str, user_id: str, amount: int) -> str:
    body = {"user_id": user_id, "asset_code": "EUR", "amount": amount}
    response = client.post(f"/wallets/{kind}", {**body, "reference_id": uuid.uuid4().hex})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def deliveries(client: ApiClient, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every delivery of an endpoint, following the pages."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/webhook-endpoints/{endpoint_id}/deliveries", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
