"""Latency of lone transactions: 202 to applied, and applied to a webhook receiver's 200.

Top-ups go one after another to an idle stack, on a tenant of their own whose one webhook
endpoint is a receiver in this process on 127.0.0.1 (the bench's stack allows private
webhook targets). The bench tenant has no endpoint: the throughput runs send no webhooks.
Webhook latency compares the receiver's clock with the database's `completed_at`, so it
assumes PostgreSQL runs on this machine's clock.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ledger.vocabulary import Scope
from tally.bench.report import percentiles
from tally.bench.workloads import ASSET, seed_tenant

if TYPE_CHECKING:
    from sqlalchemy import Engine

WAIT_SECONDS = 30
MAX_SAMPLES = 5


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that answers 200 and records when, by transaction id."""

    def __init__(self) -> None:
        self.answered: dict[str, float] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                answered_at = time.time()
                transaction_id = str(json.loads(body)["data"]["id"])
                with receiver._changed:
                    receiver.answered.setdefault(transaction_id, answered_at)
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/bench"

    def wait_for(self, transaction_id: str, timeout: float) -> float | None:
        """When the receiver answered the transaction's webhook, or None after `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: transaction_id in self.answered, timeout)
            return self.answered.get(transaction_id)

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Client:
    """One keep-alive HTTP connection to the API, with one API key."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS + 30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        try:
            self.connection.request(method, f"/api/v1{path}", payload, self.headers)
            response = self.connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next call connects afresh
            raise

    def close(self) -> None:
        self.connection.close()


def _seed_tenant(engine: Engine) -> str:
    """A tenant of its own, with an admin key and the bench asset; the key."""
    return seed_tenant(engine, "bench-latency").key(Scope.ADMIN)


def _timestamps(engine: Engine, transaction_id: str) -> tuple[float, float]:
    from sqlalchemy import text

    query = text(
        "SELECT extract(epoch FROM created_at), extract(epoch FROM completed_at)"
        " FROM transactions WHERE id = :id"
    )
    with engine.connect() as conn:
        created, completed = conn.execute(query, {"id": transaction_id}).one()
    return float(created), float(completed)


class _Failed(Exception):
    """One lone top-up that did not go through: the message says where it stopped."""


def _lone_topup(
    client: _Client, receiver: WebhookReceiver, engine: Engine, reference_id: str
) -> tuple[float, float, float]:
    """202 to applied as the client sees it, created to completed, applied to webhook."""
    topup = {"user_id": "lone", "asset_code": ASSET, "amount": 1, "reference_id": reference_id}
    try:
        status, accepted = client.call("POST", "/wallets/topup", topup)
        accepted_at = time.monotonic()
        if status != 202:
            raise _Failed(f"top-up answered HTTP {status}: {accepted}")
        transaction_id = str(accepted["id"])
        status, final = client.call("GET", f"/transactions/{transaction_id}?wait={WAIT_SECONDS}")
        observed = time.monotonic() - accepted_at
    except (OSError, http.client.HTTPException) as error:
        raise _Failed(f"{type(error).__name__}: {error}") from None
    if status != 200 or final.get("status") != "applied":
        raise _Failed(f"top-up {transaction_id} not applied: HTTP {status} {final}")
    webhook_at = receiver.wait_for(transaction_id, WAIT_SECONDS)
    if webhook_at is None:
        raise _Failed(f"no webhook for {transaction_id} within {WAIT_SECONDS}s")
    created, completed = _timestamps(engine, transaction_id)
    return observed, completed - created, webhook_at - completed


def measure_latency(engine: Engine, port: int, count: int) -> dict[str, Any]:
    """Time `count` sequential top-ups (after one unmeasured) and their webhooks."""
    client = _Client(port, _seed_tenant(engine))
    samples: list[tuple[float, float, float]] = []
    errors: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    endpoint = {"url": "", "event_types": ["transaction.applied"]}
    with WebhookReceiver() as receiver:
        try:
            status, body = client.call(
                "POST", "/webhook-endpoints", endpoint | {"url": receiver.url}
            )
        except (OSError, http.client.HTTPException) as error:
            status, body = 0, f"{type(error).__name__}: {error}"
        registered = status == 201
        if not registered:
            errors.append(f"webhook endpoint not registered: HTTP {status} {body}")
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
