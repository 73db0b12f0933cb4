"""The serving layer as `tally api` runs it: slow clients, bounded long-polls, revoked keys.

The API runs alone (no worker: transactions stay queued until a test applies them) with
short timeouts and small long-poll bounds set through the environment, as an operator
would set them. The serving layer is the same whatever the broker, so Redis suffices.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.posting import post_transactions
from ledger.tenants import create_api_key, revoke_api_key
from tests.conftest import TenantFixture
from tests.support.stack import Stack, stack_env

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
PER_TENANT = 2
PER_PROCESS = 4


def serving_env(database_url: str, redis_url: str) -> dict[str, str]:
    return stack_env(
        database_url,
        redis_url,
        TALLY_API_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        TALLY_API_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        TALLY_LONG_POLLS_PER_PROCESS=str(PER_PROCESS),
        TALLY_LONG_POLLS_PER_TENANT=str(PER_TENANT),
    )


@pytest.fixture(scope="module")
def api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One `tally api` process (granian, one worker process) and no Celery worker."""
    log_dir: Path = tmp_path_factory.mktemp("serving-logs")
    stack = Stack(database_url, redis_url, log_dir, serving_env(database_url, redis_url))
    stack.start_api()
    yield stack
    stack.stop()


@pytest.fixture(scope="module", autouse=True)
def nothing_left_queued(engine: Engine) -> Iterator[None]:
    """With no worker here, apply what the tests left queued, so no later module's worker
    finds (and counts) it."""
    yield
    while post_transactions(engine, [], fill_to=1000).outcomes:
        pass


def address(stack: Stack) -> tuple[str, int]:
    host, port = stack.base_url.removeprefix("http://").split(":")
    return host, int(port)


def topup(user_id: str = "sam") -> dict[str, Any]:
    return {"user_id": user_id, "asset_code": "EUR", "amount": 5, "reference_id": uuid.uuid4().hex}


def unfinished_post(api_key: str) -> bytes:
    """A submission's headers and the first byte of a body announced as 1,000 bytes."""
    return (
        "POST /api/v1/transactions HTTP/1.1\r\nHost: tally\r\n"
        f"Authorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()


def closed_within(sock: socket.socket, seconds: float, trickle: bytes) -> tuple[float, bytes]:
    """Trickle `trickle` every 0.2 s until the server closes the connection; how long that
    took and what the server sent (fails the test after `seconds`)."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            try:
                sock.sendall(trickle)
            except OSError:
                return time.monotonic() - started, received
            continue
        except OSError:
            return time.monotonic() - started, received
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
    raise AssertionError(f"the server kept a trickling connection open for {seconds} s")


def test_a_client_trickling_its_headers_is_cut_off(api: Stack) -> None:
    with socket.create_connection(address(api)) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: tally\r\n")
        elapsed, answer = closed_within(sock, 5.0, b"X-Slow: 1\r\n")

    assert HEADER_TIMEOUT * 0.8 <= elapsed < HEADER_TIMEOUT + 2.0
    assert b"200 OK" not in answer


def test_a_client_trickling_its_body_gets_408_and_is_cut_off(
    api: Stack, tenant: TenantFixture
) -> None:
    with socket.create_connection(address(api)) as sock:
        sock.sendall(unfinished_post(tenant.api_key))
        elapsed, answer = closed_within(sock, 5.0, b" ")

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"application/problem+json" in rest
    assert b'"code":"request_timeout"' in rest
    assert BODY_TIMEOUT * 0.8 <= elapsed < BODY_TIMEOUT + 2.0


def test_other_clients_are_served_promptly_while_many_connections_trickle(
    api: Stack, tenant: TenantFixture
) -> None:
    tricklers = []
    try:
        for number in range(150):
            sock = socket.create_connection(address(api))
            if number % 3:
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: tally\r\n")
            else:
                sock.sendall(unfinished_post(tenant.api_key))
            tricklers.append(sock)

        started = time.monotonic()
        health = requests.get(f"{api.base_url}/api/v1/health", timeout=5)
        health_seconds = time.monotonic() - started
        started = time.monotonic()
        submitted = api.client(tenant.api_key).post(
            "/transactions", {"type": "topup", **topup("busy")}
        )
        submit_seconds = time.monotonic() - started
    finally:
        for sock in tricklers:
            sock.close()

    assert health.status_code == 200
    assert submitted.status_code == 202, submitted.text
    assert health_seconds < 0.5
    assert submit_seconds < 0.5


def park(client: Any, transaction_id: str, wait: int) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = client.get(f"/transactions/{transaction_id}?wait={wait}")
    return time.monotonic() - started, response


def test_past_the_tenant_bound_a_long_poll_answers_at_once_with_the_current_state(
    api: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    client = api.client(tenant.api_key)
    accepted = client.post("/transactions", {"type": "topup", **topup("queued-one")})
    assert accepted.status_code == 202
    transaction_id = accepted.json()["id"]

    with ThreadPoolExecutor(PER_TENANT) as pool:
        parked = [pool.submit(park, client, transaction_id, 20) for _ in range(PER_TENANT)]
        wait_until_parked(api, tenant, transaction_id, PER_TENANT)

        elapsed, answer = park(client, transaction_id, 20)
        assert answer.status_code == 200
        assert answer.json()["status"] == "queued"
        assert elapsed < 1.0

        started = time.monotonic()
        submitted = client.post("/transactions?wait=20", {"type": "topup", **topup("second")})
        assert submitted.status_code == 202
        assert submitted.json()["status"] == "queued"
        assert time.monotonic() - started < 1.0

        # Another tenant is not bounded by this one's long-polls: it waits its full time.
        other_key = other_tenant_key(engine, tenant)
        other = api.client(other_key)
        other_accepted = other.post("/transactions", {"type": "topup", **topup("other")})
        assert other_accepted.status_code == 202, other_accepted.text
        other_elapsed, other_answer = park(other, other_accepted.json()["id"], 2)
        assert other_answer.status_code == 200
        assert other_elapsed >= 1.8

        # Let the parked ones go: apply everything queued.
        post_transactions(engine, [uuid.UUID(transaction_id)], fill_to=1000)
        for future in parked:
            _, response = future.result(timeout=10)
            assert response.json()["status"] == "applied"


def test_parked_long_polls_return_within_100_ms_of_the_commit(
    api: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    client = api.client(tenant.api_key)
    accepted = client.post("/transactions", {"type": "topup", **topup("prompt")})
    transaction_id = accepted.json()["id"]
    answered_at: list[float] = []
    lock = threading.Lock()

    def wait_for_it() -> dict[str, Any]:
        response = api.client(tenant.api_key).get(f"/transactions/{transaction_id}?wait=20")
        with lock:
            answered_at.append(time.monotonic())
        return dict(response.json())

    with ThreadPoolExecutor(PER_TENANT) as pool:
        waiting = [pool.submit(wait_for_it) for _ in range(PER_TENANT)]
        wait_until_parked(api, tenant, transaction_id, PER_TENANT)
        result = post_transactions(engine, [uuid.UUID(transaction_id)])
        committed_at = time.monotonic()
        bodies = [future.result(timeout=10) for future in waiting]

    assert [o.status for o in result.outcomes] == ["applied"]
    assert [body["status"] for body in bodies] == ["applied"] * PER_TENANT
    assert max(answered_at) - committed_at < 0.100


def test_a_revoked_key_is_refused_by_every_api_process_within_a_second(
    database_url: str, redis_url: str, tenant: TenantFixture, engine: Engine, tmp_path: Path
) -> None:
    stacks = [
        Stack(database_url, redis_url, tmp_path / str(n), serving_env(database_url, redis_url))
        for n in range(2)
    ]
    for number, stack in enumerate(stacks):
        (tmp_path / str(number)).mkdir()
        stack.start_api()
    try:
        with unit_of_work(engine) as conn:
            key = create_api_key(conn, tenant.id)
        for stack in stacks:
            # A first write creates the wallet; reads then come from each process's cache.
            assert stack.client(key).post("/wallets/topup", topup("rev")).status_code == 202
            for _ in range(3):
                read = stack.client(key).get("/wallets/rev/balance?asset_code=EUR")
                assert read.status_code in (200, 404), read.text

        with unit_of_work(engine) as conn:
            assert revoke_api_key(conn, key) == 1
        revoked_at = time.monotonic()

        write = stacks[0].client(key).post("/wallets/topup", topup("rev"))
        assert write.status_code == 401
        assert write.json()["code"] == "invalid_api_key"
        for stack in stacks:
            refused_after = seconds_until_refused(stack, key, revoked_at, deadline=5.0)
            assert refused_after < 1.0, f"{stack.base_url} served a revoked key for 1 s"
    finally:
        for stack in stacks:
            stack.stop()


def seconds_until_refused(stack: Stack, key: str, since: float, deadline: float) -> float:
    while time.monotonic() - since < deadline:
        read = stack.client(key).get("/wallets/rev/balance?asset_code=EUR")
        if read.status_code == 401:
            assert read.json()["code"] == "invalid_api_key"
            return time.monotonic() - since
    raise AssertionError(f"{stack.base_url} still serves a revoked key after {deadline} s")


def other_tenant_key(engine: Engine, tenant: TenantFixture) -> str:
    from ledger.tenants import create_asset, create_tenant

    with unit_of_work(engine) as conn:
        other = create_tenant(conn, f"other-{uuid.uuid4().hex[:8]}")
        create_asset(conn, other, "EUR", "Euro", 2)
        return create_api_key(conn, other)


def wait_until_parked(stack: Stack, tenant: TenantFixture, transaction_id: str, count: int) -> None:
    """Until the API process (one here) holds `count` long-polls, as its metrics say."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = requests.get(f"{stack.base_url}/metrics", timeout=5).text
        if f"tally_long_polls_parked {float(count)}" in metrics:
            return
    raise AssertionError(f"{count} long-polls were never parked")
