"""Latency of lone transactions: 202 to applied, and applied to a webhook receiver's 200.

Top-ups go one after another to an idle stack, on a tenant of their own whose one webhook
endpoint is a receiver in this process on 127.0.0.1 (the bench's stack allows private
webhook targets). The bench tenant has no endpoint: the throughput runs send no webhooks.
Webhook latency compares the receiver's clock with the database's `completed_at`, so it
assumes PostgreSQL runs on this machine's clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ledger import measurements
from ledger.vocabulary import Scope
from tally.bench.report import percentiles
from tally.bench.workloads import ASSET, seed_tenant
from tally.load_client import API, Connection, bearer
from tally.webhook_receiver import EndpointNotRegistered, Received, WebhookReceiver

if TYPE_CHECKING:
    from sqlalchemy import Engine

WAIT_SECONDS = 30
MAX_SAMPLES = 5
ROUTE = "latency"


class _Failed(Exception):
    """One lone top-up that did not go through: the message says where it stopped."""


def _about(transaction_id: str) -> Callable[[Received], bool]:
    """Whether a delivery announces this transaction."""
    return lambda delivery: str(delivery.payload["data"]["id"]) == transaction_id


def _lone_topup(
    client: Connection, receiver: WebhookReceiver, engine: Engine, reference_id: str
) -> tuple[float, float, float]:
    """202 to applied as the client sees it, created to completed, applied to webhook."""
    topup = {"user_id": "lone", "asset_code": ASSET, "amount": 1, "reference_id": reference_id}
    try:
        accepted = client.request("POST", f"{API}/wallets/topup", json_body=topup)
        accepted_at = time.monotonic()
        if accepted.status_code != 202:
            raise _Failed(f"top-up answered HTTP {accepted.status_code}: {accepted.text}")
        transaction_id = str(accepted.json()["id"])
        path = f"{API}/transactions/{transaction_id}?wait={WAIT_SECONDS}"
        final = client.request("GET", path)
        observed = time.monotonic() - accepted_at
    except OSError as error:
        raise _Failed(f"{type(error).__name__}: {error}") from None
    if final.status_code != 200 or final.json().get("status") != "applied":
        raise _Failed(f"top-up {transaction_id} not applied: HTTP {final.status_code} {final.text}")
    webhook = receiver.first_delivered(ROUTE, _about(transaction_id), WAIT_SECONDS)
    if webhook is None or webhook.answered_at is None:
        raise _Failed(f"no webhook for {transaction_id} within {WAIT_SECONDS}s")
    with engine.connect() as conn:
        created, completed = measurements.timestamps(conn, transaction_id)
    return observed, completed - created, webhook.answered_at - completed


def measure_latency(engine: Engine, port: int, count: int) -> dict[str, Any]:
    """Time `count` sequential top-ups (after one unmeasured) and their webhooks."""
    api_key = seed_tenant(engine, "bench-latency").key(Scope.ADMIN)
    client = Connection(port, timeout=WAIT_SECONDS + 30, headers=bearer(api_key))
    samples: list[tuple[float, float, float]] = []
    errors: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    with WebhookReceiver() as receiver:
        try:
            receiver.register(client, ROUTE, event_types=["transaction.applied"])
            registered = True
        except (OSError, EndpointNotRegistered) as error:
            errors.append(f"webhook endpoint not registered: {type(error).__name__}: {error}")
            registered = False
        # The first top-up warms connections and pools up: not measured.
        for index in range(count + 1 if registered else 0):
            try:
                measured = _lone_topup(client, receiver, engine, f"latency-{run_id}-{index}")
            except _Failed as error:
                errors.append(str(error))
                continue
            if index:
                samples.append(measured)
    client.close()
    accept, database, webhook = ([sample[i] for sample in samples] for i in range(3))
    return {
        "count": len(samples),
        "accept_to_applied_ms": percentiles(accept),
        "created_to_completed_ms": percentiles(database),
        "applied_to_webhook_ms": percentiles(webhook),
        "errors": len(errors),
        "error_samples": errors[:MAX_SAMPLES],
    }
