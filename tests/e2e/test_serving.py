"""The serving layer as `tally api` runs it: slow clients cut off, health checks answered
while every request thread is busy, long-polls bounded and woken at once, revoked keys
refused by every process.

Two `tally api` processes (granian, one worker process each) run with short timeouts and
small long-poll bounds set through the environment, as an operator would set them. No
Celery worker runs: a transaction stays queued until a test applies it with the posting
engine, so a long-poll waits exactly as long as the test wants. The serving layer is the
same whatever the broker, so these tests run on Redis only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.keys import KEY_CHANGES_CHANNEL, issue_api_key, revoke_api_keys_matching
from ledger.posting import post_transactions
from tally.stack import descendants
from tests.conftest import TenantFixture, make_tenant
from tests.support.stack import METRICS_TOKEN, Stack, stack_env, wait_until

# The stack here runs no worker (tests/e2e/conftest.py).
pytestmark = pytest.mark.usefixtures("nothing_left_queued")

API_THREADS = 4
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
PER_PROCESS = 4
PER_TENANT = 2
TRICKLE_EVERY = 0.2
# A slow client must be gone by its timeout plus this much.
CUT_OFF_MARGIN = 3.0
# What "at once" and "promptly" mean here: a correctness bound, not a benchmark.
PROMPTLY = 0.5
AT_ONCE = 1.0
LONG_WAIT = 20


@dataclass(frozen=True)
class Api:
    """One `tally api` process of the module's stack."""

    base_url: str
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.base_url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    # A fresh connection per request: granian closes idle keep-alive connections after the
    # (here very short) header timeout, and a reused one could be closed as a request leaves.
    def get(self, api_key: str, path: str, **params: Any) -> requests.Response:
        return requests.get(
            f"{self.base_url}/api/v1{path}", params=params, headers=bearer(api_key), timeout=60
        )

    def post(
        self, api_key: str, path: str, body: dict[str, Any], **params: Any
    ) -> requests.Response:
        return requests.post(
            f"{self.base_url}/api/v1{path}",
            json=body,
            params=params,
            headers=bearer(api_key),
            timeout=60,
        )


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="module")
def apis(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Api]]:
    """Two `tally api` processes on their own ports, and no worker."""
    env = stack_env(
        database_url,
        redis_url,
        TALLY_API_THREADS=str(API_THREADS),
        TALLY_API_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        TALLY_API_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        TALLY_LONG_POLLS_PER_PROCESS=str(PER_PROCESS),
        TALLY_LONG_POLLS_PER_TENANT=str(PER_TENANT),
    )
    stack = Stack(database_url, redis_url, tmp_path_factory.mktemp("serving-logs"), env)
    try:
        started = []
        for _ in range(2):
            name = stack.start_api()
            started.append(Api(stack.base_url, stack.children.processes[name]))
        yield started
    finally:
        stack.stop()


@pytest.fixture
def api(apis: list[Api]) -> Api:
    return apis[0]


def topup(user_id: str, amount: int = 5) -> dict[str, Any]:
    return {"user_id": user_id, "asset_code": "EUR", "amount": amount, "reference_id": ref()}


def ref() -> str:
    return uuid.uuid4().hex


def submit(api: Api, api_key: str, user_id: str) -> uuid.UUID:
    """A topup accepted and left queued (no worker runs); its id."""
    accepted = api.post(api_key, "/transactions", {"type": "topup", **topup(user_id)})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    return uuid.UUID(accepted.json()["id"])


# --- slow clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hangup:
    """What a trickling client saw: the server's bytes, and when (seconds after it began)
    they started to arrive and the connection closed."""

    received: bytes
    answered_after: float | None
    closed_after: float


def trickle_until_closed(sock: socket.socket, trickle: bytes, give_up_after: float) -> Hangup:
    """Send `trickle` every TRICKLE_EVERY seconds until the server closes the connection;
    fails the test if it is still open after `give_up_after` seconds."""
    started = time.monotonic()
    received = b""
    answered_after = None
    sock.settimeout(TRICKLE_EVERY)
    while time.monotonic() - started < give_up_after:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            with contextlib.suppress(OSError):  # closed meanwhile: the next recv says so
                sock.sendall(trickle)
            continue
        except ConnectionError:
            chunk = b""
        arrived_after = time.monotonic() - started
        if not chunk:
            return Hangup(received, answered_after, arrived_after)
        if answered_after is None:
            answered_after = arrived_after
        received += chunk
    raise AssertionError(f"the server kept a trickling client connected for {give_up_after} s")


def is_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed this connection nor answered on it."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def unfinished_post(api_key: str) -> bytes:
    """A submission's headers and the first byte of a body announced as 1,000 bytes."""
    return (
        "POST /api/v1/transactions HTTP/1.1\r\nHost: tally\r\n"
        f"Authorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()


HEADER_TRICKLERS = {
    # (what is sent at once, what is trickled after)
    "request line": (b"GET /api/v1/hea", b"l"),
    "headers": (b"GET /api/v1/health HTTP/1.1\r\nHost: tally\r\n", b"X-Slow: 1\r\n"),
}


@pytest.mark.parametrize("part", HEADER_TRICKLERS)
def test_a_client_trickling_its_request_head_is_cut_off(api: Api, part: str) -> None:
    opening, trickle = HEADER_TRICKLERS[part]
    with socket.create_connection(api.address) as sock:
        sock.sendall(opening)
        hangup = trickle_until_closed(sock, trickle, HEADER_TIMEOUT + CUT_OFF_MARGIN)

    assert HEADER_TIMEOUT * 0.9 <= hangup.closed_after < HEADER_TIMEOUT + CUT_OFF_MARGIN
    assert not hangup.received.startswith(b"HTTP/1.1 2"), hangup.received


def test_a_client_trickling_its_body_is_answered_408_and_cut_off(
    api: Api, tenant: TenantFixture
) -> None:
    with socket.create_connection(api.address) as sock:
        sock.sendall(unfinished_post(tenant.api_key))
        hangup = trickle_until_closed(sock, b" ", BODY_TIMEOUT + CUT_OFF_MARGIN)

    head, _, body = hangup.received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    assert status_line.split(" ", 2)[1] == "408", hangup.received
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "request_timeout"
    assert hangup.answered_after is not None
    assert BODY_TIMEOUT * 0.9 <= hangup.answered_after < BODY_TIMEOUT + CUT_OFF_MARGIN
    # Closed after the answer: the trickled bytes went nowhere.
    assert hangup.closed_after < BODY_TIMEOUT + CUT_OFF_MARGIN


def test_other_clients_are_served_promptly_while_many_clients_trickle(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    # The process's first submission opens its broker connection: not what is measured here.
    warm = submit(api, tenant.api_key, "warm")
    stop = threading.Event()
    tricklers: list[tuple[socket.socket, bytes]] = []

    def keep_trickling() -> None:
        while not stop.wait(TRICKLE_EVERY):
            for sock, trickle in tricklers:
                with contextlib.suppress(OSError):  # cut off already
                    sock.sendall(trickle)

    with contextlib.ExitStack() as cleanup:
        for _ in range(100):
            sock = cleanup.enter_context(socket.create_connection(api.address))
            sock.sendall(HEADER_TRICKLERS["headers"][0])
            tricklers.append((sock, HEADER_TRICKLERS["headers"][1]))
        for _ in range(50):
            sock = cleanup.enter_context(socket.create_connection(api.address))
            sock.sendall(unfinished_post(tenant.api_key))
            tricklers.append((sock, b" "))
        thread = threading.Thread(target=keep_trickling, name="tricklers")
        thread.start()
        cleanup.callback(thread.join)
        cleanup.callback(stop.set)

        started = time.monotonic()
        health = requests.get(f"{api.base_url}/api/v1/health", timeout=10)
        health_seconds = time.monotonic() - started
        started = time.monotonic()
        submitted = api.post(tenant.api_key, "/transactions", {"type": "topup", **topup("busy")})
        submit_seconds = time.monotonic() - started
        # Both answers came while every trickler still hung on its connection.
        hanging = sum(is_open(sock) for sock, _ in tricklers)

    assert health.status_code == 200, health.text
    assert submitted.status_code == 202, submitted.text
    assert health_seconds < PROMPTLY
    assert submit_seconds < PROMPTLY
    assert hanging == len(tricklers) == 150
    post_transactions(engine, [warm, uuid.UUID(submitted.json()["id"])])


def test_a_health_check_is_answered_while_every_request_thread_is_busy(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    # A key each: submissions of one key would share a commit instead of a thread each.
    with unit_of_work(engine) as work:
        keys = [issue_api_key(work, tenant.id, "write")["api_key"] for _ in range(API_THREADS + 2)]
    blocker = engine.connect()
    blocker.execute(text("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE"))
    try:
        with ThreadPoolExecutor(len(keys)) as pool:
            submissions = [
                pool.submit(api.post, key, "/transactions", {"type": "topup", **topup("busy")})
                for key in keys
            ]
            # Every request thread waits on the lock; two more requests wait for a thread.
            wait_until(
                lambda: lock_waiters(engine) >= API_THREADS,
                timeout=30,
                what=f"{API_THREADS} submissions waiting on the lock",
            )
            started = time.monotonic()
            health = requests.get(f"{api.base_url}/api/v1/health", timeout=10)
            health_seconds = time.monotonic() - started
            still_waiting = sum(not submission.done() for submission in submissions)
            blocker.rollback()
            accepted = [submission.result() for submission in submissions]
    finally:
        blocker.close()

    assert health.status_code == 200, health.text
    assert health_seconds < PROMPTLY
    assert still_waiting == len(keys)
    assert [answer.status_code for answer in accepted] == [202] * len(keys)
    post_transactions(engine, [uuid.UUID(answer.json()["id"]) for answer in accepted])


def lock_waiters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


# --- long-polls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    response: requests.Response
    at: float  # time.monotonic() when the whole response had arrived


def long_poll(api: Api, api_key: str, transaction_id: uuid.UUID, wait: int) -> Answered:
    response = api.get(api_key, f"/transactions/{transaction_id}", wait=wait)
    return Answered(response, time.monotonic())


def long_polls_parked(api: Api) -> float:
    """Long-polls holding a slot in this API process now, as its /metrics says."""
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    metrics = requests.get(f"{api.base_url}/metrics", headers=token, timeout=10).text
    for family in text_string_to_metric_families(metrics):
        if family.name == "tally_long_polls_parked":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("/metrics shows no tally_long_polls_parked")


@contextlib.contextmanager
def parked(
    api: Api, engine: Engine, waits: list[tuple[str, uuid.UUID]]
) -> Iterator[list[Future[Answered]]]:
    """Long-poll (`?wait=LONG_WAIT`) each (api key, transaction id) from a thread of its
    own; yields once every one holds its slot. On the way out, whatever is still queued is
    applied, so no thread outlives the block."""
    before = long_polls_parked(api)
    with ThreadPoolExecutor(len(waits), thread_name_prefix="long-poll") as pool:
        try:
            answers = [pool.submit(long_poll, api, key, tid, LONG_WAIT) for key, tid in waits]
            wait_until(
                lambda: long_polls_parked(api) >= before + len(waits),
                10,
                f"{len(waits)} long-polls to be parked",
            )
            assert not any(answer.done() for answer in answers), "a long-poll did not wait"
            yield answers
        finally:
            post_transactions(engine, {tid for _, tid in waits})


def test_past_the_tenant_bound_a_long_poll_answers_at_once_with_the_current_state(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    queued = submit(api, tenant.api_key, "ida")
    with parked(api, engine, [(tenant.api_key, queued)] * PER_TENANT) as waiting:
        started = time.monotonic()
        past_the_bound = long_poll(api, tenant.api_key, queued, LONG_WAIT)
        elapsed = past_the_bound.at - started
        assert not any(answer.done() for answer in waiting)

    assert past_the_bound.response.status_code == 200, past_the_bound.response.text
    assert past_the_bound.response.json()["status"] == "queued"
    assert elapsed < AT_ONCE
    # The parked ones waited on, and saw the transaction applied.
    assert [a.result().response.json()["status"] for a in waiting] == ["applied"] * PER_TENANT


def test_past_the_tenant_bound_a_submission_with_wait_is_accepted_at_once(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    queued = submit(api, tenant.api_key, "jo")
    with parked(api, engine, [(tenant.api_key, queued)] * PER_TENANT):
        started = time.monotonic()
        submitted = api.post(
            tenant.api_key, "/transactions", {"type": "topup", **topup("jo")}, wait=LONG_WAIT
        )
        elapsed = time.monotonic() - started

    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["status"] == "queued"
    assert elapsed < AT_ONCE
    post_transactions(engine, [uuid.UUID(submitted.json()["id"])])


def test_the_long_poll_bound_is_per_tenant_another_tenant_still_waits(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    other = make_tenant(engine, "other")
    queued, others = submit(api, tenant.api_key, "kai"), submit(api, other.api_key, "kai")
    with parked(api, engine, [(tenant.api_key, queued)] * PER_TENANT):
        started = time.monotonic()
        waited = long_poll(api, other.api_key, others, wait=2)
        elapsed = waited.at - started

    assert waited.response.status_code == 200, waited.response.text
    assert waited.response.json()["status"] == "queued"
    assert elapsed >= 1.5
    post_transactions(engine, [others])


def test_parked_long_polls_answer_within_100_ms_of_the_commit(
    api: Api, tenant: TenantFixture, engine: Engine
) -> None:
    # Two tenants, two long-polls each: the process's whole bound, on two transactions.
    other = make_tenant(engine, "other")
    mine, theirs = submit(api, tenant.api_key, "lou"), submit(api, other.api_key, "lou")
    waits = [(tenant.api_key, mine)] * PER_TENANT + [(other.api_key, theirs)] * PER_TENANT
    with parked(api, engine, waits) as waiting:
        applying_at = time.monotonic()
        result = post_transactions(engine, [mine, theirs])  # one batch, one commit
        committed_at = time.monotonic()
        answers = [answer.result(timeout=LONG_WAIT) for answer in waiting]

    assert sorted(o.status for o in result.outcomes) == ["applied", "applied"]
    assert [a.response.json()["status"] for a in answers] == ["applied"] * len(waits)
    # Each answer came after the apply began (it waited for it) and at most 100 ms after
    # the commit returned.
    assert all(applying_at < a.at < committed_at + 0.100 for a in answers), [
        round(a.at - committed_at, 4) for a in answers
    ]


# --- cached keys --------------------------------------------------------------------------------


def listens(engine: Engine, api: Api, channel: str) -> bool:
    """Whether one of this API's processes holds a PostgreSQL connection LISTENing on
    `channel`: matched by the client port of each backend."""
    ports = set()
    for process in [api.process, *descendants(api.process)]:
        with contextlib.suppress(psutil.Error):
            ports |= {c.laddr.port for c in psutil.Process(process.pid).net_connections("tcp")}
    with engine.connect() as conn:
        listening = conn.execute(
            text(
                "SELECT client_port FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = :listen"
            ),
            {"listen": f'LISTEN "{channel}"'},
        ).scalars()
        return bool(ports & set(listening))


def seconds_until_refused(api: Api, api_key: str, since: float, give_up_after: float) -> float:
    """Read a balance with the key until the API refuses it; seconds from `since` to then."""
    while time.monotonic() - since < give_up_after:
        read = api.get(api_key, "/wallets/max/balance", asset_code="EUR")
        if read.status_code == 401:
            assert read.json()["code"] == "invalid_api_key"
            return time.monotonic() - since
        assert read.status_code == 200, read.text
    raise AssertionError(f"{api.base_url} still serves a revoked key after {give_up_after} s")


def test_a_revoked_key_is_refused_by_every_api_process_within_a_second(
    apis: list[Api], tenant: TenantFixture, engine: Engine
) -> None:
    with unit_of_work(engine) as work:
        key = issue_api_key(work, tenant.id, "write")["api_key"]
    accepted = submit(apis[0], key, "max")  # the intake creates the wallet
    for api in apis:
        # The first read starts the process's key listener; once it listens, a read caches
        # the key and later reads trust the cache.
        assert api.get(key, "/wallets/max/balance", asset_code="EUR").status_code == 200
        wait_until(partial(listens, engine, api, KEY_CHANGES_CHANNEL), 10, "its key listener")
        for _ in range(3):
            read = api.get(key, "/wallets/max/balance", asset_code="EUR")
            assert read.status_code == 200, read.text

    with unit_of_work(engine) as work:
        assert revoke_api_keys_matching(work, key) == 1
    revoked_at = time.monotonic()

    writes = [api.post(key, "/transactions", {"type": "topup", **topup("max")}) for api in apis]
    with ThreadPoolExecutor(len(apis)) as pool:
        refused_after = list(
            pool.map(lambda api: seconds_until_refused(api, key, revoked_at, 5.0), apis)
        )

    assert [w.status_code for w in writes] == [401] * len(apis)
    assert [w.json()["code"] for w in writes] == ["invalid_api_key"] * len(apis)
    assert all(seconds < 1.0 for seconds in refused_after), refused_after
    post_transactions(engine, [accepted])
