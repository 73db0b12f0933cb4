"""A broker that goes away and comes back: nothing accepted in between is stranded
(docs/design.md#redelivery-and-the-relay).

The shared broker is not ours to restart, so the stack reaches it through a TCP proxy this
test owns. Cutting the proxy drops every connection and refuses new ones, as a broker
restart does; restoring it on the same port brings the broker back. The API, the worker
and the relay must all find their way back on their own.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from sqlalchemy import Engine

from tests.conftest import TenantFixture, backend_missing
from tests.support.stack import Stack, outcome_of, stack_env, status_counts, wait_until

BATCH = 20


class BrokerProxy:
    """Forwards a local port to the broker; `cut()` drops all connections and stops
    listening, `restore()` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            self._close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise ConnectionError
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            for sock in (a, b):
                self._close(sock)
            with self._lock:
                self._sockets -= {a, b}

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def through(proxy: BrokerProxy, broker_url: str) -> str:
    parts = urlsplit(broker_url)
    credentials = parts.netloc.rpartition("@")[0]
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}" if credentials else host))


@pytest.fixture(scope="module")
def proxy(broker_url: str) -> Iterator[BrokerProxy]:
    parts = urlsplit(broker_url)
    if parts.scheme not in {"redis", "amqp"} or parts.port is None:
        backend_missing("needs a TCP broker URL with an explicit port")
    proxy = BrokerProxy((parts.hostname or "127.0.0.1", parts.port))
    proxy.restore()
    yield proxy
    proxy.cut()


@pytest.fixture(scope="module")
def proxied_stack(
    proxy: BrokerProxy,
    database_url: str,
    broker_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    url = through(proxy, broker_url)
    stack = Stack(
        database_url, url, tmp_path_factory.mktemp("proxied-logs"), stack_env(database_url, url)
    )
    stack.start_api()
    stack.start_worker()
    yield stack
    stack.stop()


def topups(client_key: str, stack: Stack, user: str) -> list[requests.Response]:
    client = stack.client(client_key)
    return [
        client.post(
            "/wallets/topup",
            {"user_id": user, "asset_code": "EUR", "amount": 1, "reference_id": uuid.uuid4().hex},
        )
        for _ in range(BATCH)
    ]


def test_transactions_accepted_while_the_broker_restarts_are_applied(
    proxy: BrokerProxy, proxied_stack: Stack, tenant: TenantFixture, engine: Engine
) -> None:
    client = proxied_stack.client(tenant.api_key)
    before = topups(tenant.api_key, proxied_stack, "before")
    assert {outcome_of(client, r.json()["id"])["status"] for r in before} == {"applied"}

    proxy.cut()
    during = topups(tenant.api_key, proxied_stack, "during")
    assert {r.status_code for r in during} == {202}
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["broker"] == "unavailable"

    proxy.restore()
    wait_until(
        lambda: client.get("/health").status_code == 200,
        timeout=60,
        what="the API to see the broker again",
    )
    after = topups(tenant.api_key, proxied_stack, "after")
    assert {r.status_code for r in after} == {202}

    wait_until(
        lambda: status_counts(engine, tenant.id) == {"applied": 3 * BATCH},
        timeout=180,
        what="every transaction to be applied after the broker came back",
    )
    for user in ("before", "during", "after"):
        balance = client.get(f"/wallets/{user}/balance", params={"asset_code": "EUR"}).json()
        assert balance["balance"] == BATCH
