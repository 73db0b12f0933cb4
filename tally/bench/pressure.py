"""The slow-clients pressure: trickling connections, pending long-polls and a /health probe.

Runs in a spawned process of its own (standard library and `tally.load_client` only, like
load.py) for a fixed time, so that its CPU is its own and the normal load generator is
undisturbed:

- `slow` connections send request headers one short line a second and never finish; the
  API cuts them off after its header timeout, and each is opened again at once, so the
  pressure lasts the whole phase;
- `long_polls` requests `GET /transactions/{id}?wait=30` on transactions that stay queued,
  spread over several tenants (the API bounds long-polls per tenant); each is sent again one
  second after it returns, so the pressure stays bounded even past the API's bounds;
- `/health` is probed on a fresh connection every 0.2 s and timed (with the time of each
  probe, so that the caller can tell probes made beside its normal load from the others).

The trickling connections and the long-polls are sockets this module drives itself, all
from one thread: the one place under `tally/` that speaks HTTP without `tally.load_client`,
whose requests always finish and each wait for their answer. The `/health` probe is that
client's `probe`, the same one the normal load's run takes from a `Prober` thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Any

from tally.load_client import API, HEALTH_PATH, Probed, probe, render_request

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
    path = f"{API}/transactions/{transaction_id}?wait={LONG_POLL_WAIT_SECONDS}"
    return render_request("GET", path, {"Authorization": f"Bearer {key}"}, host="bench")


def health_seconds(probed: Probed) -> float | None:
    """How long a `/health` probe took to be answered 200; None if it was not."""
    return probed.seconds if probed.status == 200 else None


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
            sock.send(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: bench\r\n".encode())
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
            health.append((now, health_seconds(probe(job.port, HEALTH_PATH))))
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
