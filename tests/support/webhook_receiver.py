"""A real webhook receiver for tests: an HTTP server on loopback that records every request
and answers as each test scripts it (status codes, Retry-After, hanging, being down)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from tests.support.stack import free_port

HANG = "hang"
HANG_LIMIT_SECONDS = 60.0

# An answer: a status code, a status with extra headers and body, or HANG (hold the request
# until released, then answer 200).
Answer = int | str | tuple[int, dict[str, str], bytes]


def eventually(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until `condition()` returns something truthy, and return it; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling an observable condition, bounded by the deadline


@dataclass
class Received:
    """One request as the receiver saw it."""

    name: str
    headers: dict[str, str]
    body: bytes
    arrived_at: float
    answered: int | None = None
    answered_at: float | None = None
    path: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class _Route:
    script: deque[Answer] = field(default_factory=deque)
    default: Answer = 200
    delay: float = 0.0


class WebhookReceiver:
    """Serves http://127.0.0.1:<port>/hooks/<name>; each name is scripted on its own.

    `url(name)` may hold any text: the sender percent-encodes it, the receiver decodes it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self._routes: dict[str, _Route] = {}
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # Scripting

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def _route(self, name: str) -> _Route:
        return self._routes.setdefault(name, _Route())

    def answer(self, name: str, *script: Answer, then: Answer = 200, delay: float = 0.0) -> None:
        """Answer the next requests for `name` with `script`, and every later one with `then`."""
        with self._changed:
            route = self._route(name)
            route.script = deque(script)
            route.default = then
            route.delay = delay
            if then != HANG:
                self._release.set()
                self._release = threading.Event()

    def _next_answer(self, name: str) -> tuple[Answer, float, threading.Event]:
        with self._changed:
            route = self._route(name)
            answer = route.script.popleft() if route.script else route.default
            return answer, route.delay, self._release

    # Observing

    def received(self, name: str | None = None) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if name is None or r.name == name]

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
    ) -> None:
        """Block until `condition()` holds (re-checked on every request), or fail the test."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver: timed out after {timeout}s waiting for {what}")
                self._changed.wait(min(remaining, 0.5))

    def wait_for_count(self, name: str, count: int, timeout: float = 60.0) -> list[Received]:
        """Wait until `name` has been answered with a 2xx at least `count` times."""
        self.wait_until(
            lambda: len(self.delivered(name)) >= count,
            timeout,
            f"{count} successful requests to {name}",
        )
        return self.delivered(name)

    def delivered(self, name: str) -> list[Received]:
        return [
            r
            for r in self.requests
            if r.name == name and r.answered is not None and 200 <= r.answered < 300
        ]

    # Running

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                # Names are scripted as text; on the wire they arrive percent-encoded.
                name = unquote(self.path.removeprefix("/hooks/").split("?", 1)[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = Received(
                    name,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.time(),
                    path=self.path,
                )
                with receiver._changed:
                    receiver.requests.append(record)
                    receiver._changed.notify_all()
                answer, delay, release = receiver._next_answer(name)
                if delay:
                    time.sleep(delay)  # a slow receiver, as scripted
                if answer == HANG:
                    release.wait(HANG_LIMIT_SECONDS)
                    answer = 200
                status, headers, content = (
                    answer if isinstance(answer, tuple) else (int(answer), {}, b"ok")
                )
                try:
                    self.send_response(status)
                    for header, value in headers.items():
                        self.send_header(header, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    self.wfile.flush()
                except OSError:
                    return  # the sender gave up on us (its timeout): nothing was answered
                with receiver._changed:
                    record.answered = status
                    record.answered_at = time.time()
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop answering: connections to the port are refused until `start()` again."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
