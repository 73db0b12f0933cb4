"""A long-poll parked in the serving layer wakes for a notification that arrives while it
is reading the transaction's state (it used to clear that wake-up and sleep out its wait)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from api.server import LongPoll, TallyServer
from api.waiter import LoopEvent
from config.settings import Settings
from tests.conftest import WEBHOOK_SECRET_KEYS


class Waiter:
    """The waiter's async side: one subscription, set by whoever notifies."""

    def __init__(self) -> None:
        self.event: LoopEvent | None = None

    def subscribe_async(self, transaction_id: str, loop: asyncio.AbstractEventLoop) -> LoopEvent:
        self.event = LoopEvent(loop)
        return self.event

    def unsubscribe_async(self, transaction_id: str, event: LoopEvent) -> None:
        self.event = None


class Client:
    async def client_disconnect(self) -> None:
        await asyncio.Event().wait()  # never goes away


def test_a_notification_during_the_read_wakes_the_wait_that_follows() -> None:
    waiter = Waiter()
    app = SimpleNamespace(extensions={"tally": SimpleNamespace(waiter=waiter)})
    server = TallyServer(
        app, Settings(webhook_secret_keys=WEBHOOK_SECRET_KEYS, database_url=None, broker_url=None)
    )  # type: ignore[arg-type]
    reads: list[str] = []

    def render() -> tuple[bytes, bool]:
        """First read: still queued, and the outcome is notified while it runs."""
        if not reads:
            reads.append("queued")
            assert waiter.event is not None
            waiter.event.set()  # from this pool thread, as the LISTEN thread would
            return b"queued", False
        reads.append("applied")
        return b"applied", True

    async def long_poll() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        poll = LongPoll("tx-1", timeout=5.0, render=render, release=lambda: None)
        started = loop.time()
        body = await server._long_poll(loop, Client(), poll, b"")
        return body, loop.time() - started

    try:
        body, waited = asyncio.run(long_poll())
    finally:
        server.executor.shutdown()

    assert body == b"applied" and reads == ["queued", "applied"]
    assert waited < 1.0, f"slept {waited:.1f} s of a 5 s wait through the notification"
