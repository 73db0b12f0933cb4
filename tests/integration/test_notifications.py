"""The shared LISTEN loop against the real PostgreSQL: delivery, reconnection, stopping."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.notifications import listen
from tests.support.stack import free_port

TIMEOUT = 10.0


class Listener:
    """`listen` in a thread, with every callback recorded for the test to wait on."""

    def __init__(self, database_url: str, **options: Any) -> None:
        self.channel = f"tally_test_{uuid.uuid4().hex[:12]}"
        self.stop = threading.Event()
        self.payloads: queue.Queue[str] = queue.Queue()
        self.listening: queue.Queue[None] = queue.Queue()
        self.lost: queue.Queue[None] = queue.Queue()
        self.thread = threading.Thread(
            target=listen,
            args=(database_url, self.channel, self.stop, self.payloads.put),
            kwargs={
                "on_listening": lambda: self.listening.put(None),
                "on_lost": lambda: self.lost.put(None),
                "name": "test listener",
                **options,
            },
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)


@pytest.fixture
def start_listener() -> Iterator[Callable[..., Listener]]:
    listeners: list[Listener] = []

    def start(database_url: str, **options: Any) -> Listener:
        listeners.append(Listener(database_url, **options))
        return listeners[-1]

    yield start
    for listener in listeners:
        listener.close()


def notify(engine: Engine, channel: str, payload: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


def test_each_notification_reaches_the_callback_with_its_payload(
    engine: Engine, database_url: str, start_listener: Callable[..., Listener]
) -> None:
    listener = start_listener(database_url)
    listener.listening.get(timeout=TIMEOUT)

    notify(engine, listener.channel, "a,b")
    notify(engine, listener.channel, "c")

    assert [listener.payloads.get(timeout=TIMEOUT) for _ in range(2)] == ["a,b", "c"]


def test_a_lost_connection_is_reported_then_listening_resumes(
    engine: Engine, database_url: str, start_listener: Callable[..., Listener]
) -> None:
    listener = start_listener(database_url, reconnect_delay=0.05)
    listener.listening.get(timeout=TIMEOUT)

    with engine.begin() as conn:
        terminated = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = :listen"
            ),
            {"listen": f'LISTEN "{listener.channel}"'},
        ).scalar()
    assert terminated == 1

    listener.lost.get(timeout=TIMEOUT)
    listener.listening.get(timeout=TIMEOUT)
    notify(engine, listener.channel, "after")
    assert listener.payloads.get(timeout=TIMEOUT) == "after"


def test_stop_ends_the_loop_while_connected(
    database_url: str, start_listener: Callable[..., Listener]
) -> None:
    listener = start_listener(database_url)
    listener.listening.get(timeout=TIMEOUT)

    listener.close()

    assert not listener.thread.is_alive()
    assert listener.lost.empty()


def test_stop_cuts_the_pause_before_a_reconnect_short(
    start_listener: Callable[..., Listener],
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    listener = start_listener(unreachable, reconnect_delay=3600)
    listener.lost.get(timeout=TIMEOUT)

    listener.close()

    assert not listener.thread.is_alive()
    assert listener.listening.empty()
