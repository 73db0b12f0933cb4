"""The delivery HTTP client against receivers that misbehave on the wire (loopback sockets)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from worker.webhook_http import post_webhook

DEADLINE_SECONDS = 0.5
# Paced so the head is still incomplete well after the deadline; the receiver stops as soon
# as the client hangs up, so the test never waits for the whole head.
HEADER = b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
BYTE_INTERVAL_SECONDS = 0.02


class _TricklingReceiver:
    """Answers `200` at once, then sends its headers one byte at a time."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.hung_up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                for byte in HEADER:
                    connection.sendall(bytes([byte]))
                    time.sleep(BYTE_INTERVAL_SECONDS)
            except OSError:
                pass
            self.hung_up.set()

    def __enter__(self) -> _TricklingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        self._thread.join(10)


@pytest.fixture
def trickling_receiver() -> Iterator[_TricklingReceiver]:
    with _TricklingReceiver() as receiver:
        yield receiver


def test_a_status_line_followed_by_headers_trickled_past_the_deadline_is_a_timeout(
    trickling_receiver,
):
    assert len(HEADER) * BYTE_INTERVAL_SECONDS > 4 * DEADLINE_SECONDS

    result = post_webhook(
        f"http://127.0.0.1:{trickling_receiver.port}/hook",
        b"{}",
        {},
        timeout=DEADLINE_SECONDS,
        allow_private=True,
    )

    assert not result.succeeded
    assert result.status_code is None
    assert result.error == f"timed out after {DEADLINE_SECONDS}s"
    assert result.latency_ms < 4 * DEADLINE_SECONDS * 1000
