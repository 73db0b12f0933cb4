"""The one webhook receiver of Tally's own tools: a merchant's endpoint on loopback, used by
the bench's latency measurement, the chaos run and the tests.

It serves `http://127.0.0.1:<port>/hooks/<name>`, each name a route of its own: it records
every request, answers as scripted (status codes, extra headers, a delay, hanging until
released; 200 otherwise), checks Standard Webhooks signatures with Tally's own signer on
the routes it was given a secret for (docs/webhooks.md#signatures), and can be stopped and
started again on the same port, as a receiver that goes down and comes back. It binds
127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from ledger.webhooks.signing import sign
from tally.load_client import API, Connection
from tally.stack import free_port

HANG = "hang"
HANG_LIMIT_SECONDS = 60.0

# An answer: a status code, a status with extra headers and body, or HANG (hold the request
# until released, then answer 200).
Answer = int | str | tuple[int, dict[str, str], bytes]


class ReceiverTimeout(AssertionError):
    """A wait on the receiver ran out of time (an AssertionError: a test waiting fails)."""


class EndpointNotRegistered(RuntimeError):
    """The API refused to register the receiver as a webhook endpoint."""


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
    # False when the sender gave up before its whole body arrived (then nothing answers).
    complete: bool = True
    # Whether its signature verified, on a route with a secret; None on the others.
    signature_valid: bool | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The body as JSON."""
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the event's message id, the same on every retry."""
        return self.headers["webhook-id"]


@dataclass
class _Route:
    script: deque[Answer] = field(default_factory=deque)
    default: Answer = 200
    delay: float = 0.0
    secret: str | None = None


def signature_valid(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether one of the `webhook-signature`s is the body's, signed with `secret`."""
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit():
        return False
    expected = sign(secret, headers.get("webhook-id", ""), int(timestamp), body)
    return expected in headers.get("webhook-signature", "").split()


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
        """The URL of the route `name`."""
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

    def verify(self, name: str, secret: str) -> None:
        """Check the signature of every later request for `name` with the endpoint's secret."""
        with self._changed:
            self._route(name).secret = secret
            # Any that came before the secret was known (a delivery racing the registration).
            for record in self.requests:
                if record.name == name and record.complete and record.signature_valid is None:
                    record.signature_valid = signature_valid(secret, record.headers, record.body)

    def register(self, api: Connection, name: str, **fields: Any) -> dict[str, Any]:
        """Register the route `name` as a webhook endpoint through the API (a connection with
        the tenant's key), and verify its deliveries with the new secret; the endpoint."""
        answer = api.request(
            "POST", f"{API}/webhook-endpoints", json_body={"url": self.url(name), **fields}
        )
        if answer.status_code != 201:
            raise EndpointNotRegistered(f"HTTP {answer.status_code} {answer.text}")
        endpoint: dict[str, Any] = answer.json()
        self.verify(name, endpoint["secret"])
        return endpoint

    def _next_answer(self, name: str) -> tuple[Answer, float, threading.Event]:
        with self._changed:
            route = self._route(name)
            answer = route.script.popleft() if route.script else route.default
            return answer, route.delay, self._release

    # Observing

    def received(self, name: str | None = None) -> list[Received]:
        """Every request so far, or those for `name`."""
        with self._changed:
            return [r for r in self.requests if name is None or r.name == name]

    def _wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Whether `condition()` came to hold (re-checked on every request) within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
        return True

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
    ) -> None:
        """Block until `condition()` holds (re-checked on every request), or fail the test."""
        if not self._wait(condition, timeout):
            raise ReceiverTimeout(f"receiver: timed out after {timeout}s waiting for {what}")

    def wait_for_count(self, name: str, count: int, timeout: float = 60.0) -> list[Received]:
        """Wait until `name` has been answered with a 2xx at least `count` times."""
        self.wait_until(
            lambda: len(self.delivered(name)) >= count,
            timeout,
            f"{count} successful requests to {name}",
        )
        return self.delivered(name)

    def first_delivered(
        self, name: str, match: Callable[[Received], bool], timeout: float
    ) -> Received | None:
        """The first request for `name` that `match`es and was answered with a 2xx, waiting
        up to `timeout` seconds for it; None if none came."""

        def found() -> Received | None:
            return next((r for r in self.delivered(name) if match(r)), None)

        self._wait(lambda: found() is not None, timeout)
        return found()

    def delivered(self, name: str) -> list[Received]:
        """The requests for `name` answered with a 2xx."""
        return [
            r
            for r in self.requests
            if r.name == name and r.answered is not None and 200 <= r.answered < 300
        ]

    # Running

    def start(self) -> None:
        """Listen on 127.0.0.1 at `port` (the same port on every start)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                # Names are scripted as text; on the wire they arrive percent-encoded.
                name = unquote(self.path.removeprefix("/hooks/").split("?", 1)[0])
                declared = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(declared)
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = Received(name, headers, body, time.time(), path=self.path)
                record.complete = len(body) == declared
                with receiver._changed:
                    secret = receiver._route(name).secret
                    if secret is not None and record.complete:
                        record.signature_valid = signature_valid(secret, headers, body)
                    receiver.requests.append(record)
                    receiver._changed.notify_all()
                if not record.complete:
                    return  # the sender gave up mid-body (its timeout): nobody to answer
                self._answer(record)

            def _answer(self, record: Received) -> None:
                answer, delay, release = receiver._next_answer(record.name)
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
