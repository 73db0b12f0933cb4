"""The slow-clients pressure: trickling connections, pending long-polls and a /health probe.

Runs in a spawned process of its own (stdlib only, like load.py) for a fixed time, so that
its CPU is its own and the normal load generator is undisturbed:

- `slow` connections send request headers one short line a second and never finish; the
  API cuts them off after its header timeout, and each is opened again at once, so the
  pressure lasts the whole phase;
- `long_polls` requests `GET /transactions/{id}?wait=30` on transactions that stay queued,
  spread over several tenants (the API bounds long-polls per tenant); each is sent again one
  second after it returns, so the pressure stays bounded even past the API's bounds;
- `/health` is probed on a fresh connection every 0.2 s and timed (with the time of each
  probe, so that the caller can tell probes made beside its normal load from the others).

`HealthProbe` is the same probe as a thread, for the normal load's run without pressure.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

HEALTH_EVERY_SECONDS = 0.2
LONG_POLL_WAIT_SECONDS = 30
TRICKLE_EVERY_SECONDS = 1.0
REPOLL_AFTER_SECONDS = 1.0
# A long-poll that returns sooner than this was answered at once: it was not parked.
PARKED_AT_LEAST_SECONDS = 1.0


@dataclass(frozen=True)
class PressureJob:
    port: int
    duration: float
    slow: int
    # (api key, transaction id) per tenant; the long-polls are spread over them.
    targets: list[tuple[str, str]]
    long_polls: int


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _long_poll_request(key: str, transaction_id: str) -> bytes:
    return (
        f"GET /api/v1/transactions/{transaction_id}?wait={LONG_POLL_WAIT_SECONDS} HTTP/1.1\r\n"
        "Host: bench\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()


def _health(port: int) -> float | None:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            if not sock.recv(64).startswith(b"HTTP/1.1 200"):
                return None
    except OSError:
        return None
    return time.perf_counter() - started


class HealthProbe:
    """Probes `/health` every 0.2 s on a thread of its own, for as long as its `with` block."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.probes: list[float | None] = []  # seconds, or None for a failure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, name="health-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _probe(self) -> None:
        while not self._stop.is_set():
            self.probes.append(_health(self.port))
            self._stop.wait(HEALTH_EVERY_SECONDS)


def run_pressure(job: PressureJob) -> dict[str, Any]:
    """Keep the pressure up for `job.duration` seconds; what it saw."""
    cpu_at_start = time.process_time()
    selector = selectors.DefaultSelector()
    end = time.monotonic() + job.duration
    slow: dict[socket.socket, float] = {}
    polls: dict[socket.socket, tuple[int, float]] = {}
    due: list[tuple[float, int]] = [(0.0, n) for n in range(job.long_polls)]
    stats = {"cut_off": 0, "polls_answered": 0, "polls_parked": 0, "connect_errors": 0}
    health: list[tuple[float, float | None]] = []  # (when, seconds or None for a failure)
    next_health = time.monotonic()

    def open_slow() -> None:
        try:
            sock = _connect(job.port)
            sock.send(b"GET /api/v1/health HTTP/1.1\r\nHost: bench\r\n")
        except OSError:
            stats["connect_errors"] += 1
            return
        slow[sock] = time.monotonic()
        selector.register(sock, selectors.EVENT_READ, "slow")

    def open_poll(number: int) -> None:
        key, transaction_id = job.targets[number % len(job.targets)]
        try:
            sock = _connect(job.port)
            sock.send(_long_poll_request(key, transaction_id))
        except OSError:
            stats["connect_errors"] += 1
            due.append((time.monotonic() + REPOLL_AFTER_SECONDS, number))
            return
        polls[sock] = (number, time.monotonic())
        selector.register(sock, selectors.EVENT_READ, "poll")

    for _ in range(job.slow):
        open_slow()
    while (now := time.monotonic()) < end:
        ready = [entry for entry in due if entry[0] <= now]
        for entry in ready:
            due.remove(entry)
            open_poll(entry[1])
        if now >= next_health:
            health.append((now, _health(job.port)))
            next_health = now + HEALTH_EVERY_SECONDS
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if key.data == "slow" and not data:  # cut off by the API: open another
                selector.unregister(sock)
                sock.close()
                del slow[sock]
                stats["cut_off"] += 1
                open_slow()
            elif key.data == "poll":
                # One read is the whole answer: status views are small.
                selector.unregister(sock)
                sock.close()
                number, sent = polls.pop(sock)
                stats["polls_answered"] += 1
                if time.monotonic() - sent >= PARKED_AT_LEAST_SECONDS:
                    stats["polls_parked"] += 1
                due.append((time.monotonic() + REPOLL_AFTER_SECONDS, number))
        for sock, last in list(slow.items()):
            if now - last >= TRICKLE_EVERY_SECONDS:
                with contextlib.suppress(OSError):  # closed: the read side reopens it
                    sock.send(b"X-Slow: 1\r\n")
                slow[sock] = now
    stats["pending_at_end"] = len(polls)
    for sock in [*slow, *polls]:
        sock.close()
    return {
        **stats,
        "health_probes": health,
        "cpu": time.process_time() - cpu_at_start,
    }
