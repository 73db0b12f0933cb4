"""The one HTTP client of Tally's own tools: the bench's load generator, the chaos run's
merchants, the probes that time `/health` or watch an outage, the stack's health check, the
webhook receiver's registration and the tests' concurrent submissions.

A keep-alive HTTP/1.1 connection on a raw socket: about a tenth of http.client's CPU per
request, which keeps the load generator's share of the machine small
(docs/performance.md#running-the-bench). Standard library only: the bench's client
processes are spawned fresh and import nothing else. An answer is read by its
Content-Length (Tally always sends one), else up to the end of the connection; chunked
bodies are not decoded. Timeouts are per socket operation, as in the standard library.

The slow-clients scenario's trickling connections and parked long-polls are not requests
this client finishes: `tally/bench/pressure.py` drives those sockets itself.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

API = "/api/v1"
HEALTH_PATH = f"{API}/health"
DEFAULT_TIMEOUT_SECONDS = 60.0
NO_HEADERS: Mapping[str, str] = {}


def bearer(api_key: str) -> dict[str, str]:
    """The header that authenticates a request with `api_key`."""
    return {"Authorization": f"Bearer {api_key}"}


class ProtocolError(ConnectionError):
    """What the server sent was not an HTTP/1.1 answer."""


class Headers(Mapping[str, str]):
    """An answer's header fields, looked up by name in any case."""

    def __init__(self, head: bytes) -> None:
        self._fields: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            self._fields[name.strip().lower()] = value.strip()

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class Response:
    """One answer: its status code, its headers (parsed when first read) and its body."""

    __slots__ = ("_head", "_headers", "content", "status_code")

    def __init__(self, status_code: int, head: bytes, content: bytes) -> None:
        self.status_code = status_code
        self.content = content
        self._head = head
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        """The header fields, by name in any case."""
        if self._headers is None:
            self._headers = Headers(self._head)
        return self._headers

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


def render_request(
    method: str,
    path: str,
    headers: Mapping[str, str] = NO_HEADERS,
    body: bytes | None = None,
    *,
    host: str = "127.0.0.1",
) -> bytes:
    """A request as it goes on the wire: request line, Host, `headers`, and a body with its
    Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b"")


class Connection:
    """A keep-alive connection to one server, sending every request with `headers`; it
    connects on the first request and again after the server closed it."""

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> None:
        self.port = port
        self.host = host
        self.timeout = timeout
        self.headers = dict(headers)
        self._sock: socket.socket | None = None
        self._buffer = b""

    @classmethod
    def to(cls, base_url: str, **options: Any) -> Connection:
        """A connection to the server of `base_url` (`http://host:port`)."""
        url = urlsplit(base_url)
        return cls(url.port or 80, host=url.hostname or "127.0.0.1", **options)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> Response:
        """Send one request (`json_body` as JSON, else `body`) and read its answer."""
        fields = {**self.headers, **headers}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            fields.setdefault("Content-Type", "application/json")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.send(render_request(method, path, fields, body, host=host))

    def send(self, raw: bytes) -> Response:
        """Send a request already rendered (`render_request`) and read its answer."""
        if self._sock is not None and self._stale():
            self.close()
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        try:
            self._sock.sendall(raw)
            return self._answer(head_only=raw.startswith(b"HEAD "))
        except BaseException:
            self.close()  # half a request or half an answer: the connection is unusable
            raise

    def _stale(self) -> bool:
        """Whether the idle connection has something to read: the server closed it (its
        idle timeout) or spoke unasked. A request sent on it would meet a closed socket."""
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0)) or bool(self._buffer)

    def _answer(self, head_only: bool) -> Response:
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        try:
            status = int(head[9:12])
        except ValueError:
            raise ProtocolError(f"not an HTTP answer: {head[:60]!r}") from None
        lowered = head.lower()
        marker = lowered.find(b"\r\ncontent-length:")
        if head_only or status in (204, 304) or status < 200:
            body, self._buffer = b"", rest
        elif marker >= 0:
            length = int(lowered[marker + 17 :].split(b"\r\n", 1)[0])
            while len(rest) < length:
                rest += self._recv()
            body, self._buffer = rest[:length], rest[length:]
        else:
            body, self._buffer = rest + self._rest_of_stream(), b""
        if b"\r\nconnection: close" in lowered:
            self.close()
        return Response(status, head, body)

    def _recv(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def _rest_of_stream(self) -> bytes:
        """Everything until the server closes: an answer without a Content-Length."""
        assert self._sock is not None
        chunks = []
        while chunk := self._sock.recv(65536):
            chunks.append(chunk)
        self.close()
        return b"".join(chunks)

    def close(self) -> None:
        """Close the socket; the next request connects again."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- probes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probed:
    """One probe: when it was sent (`time.monotonic()`), how long its answer took, and the
    answer's status (None: no answer; `timed_out` if none came within the timeout)."""

    sent_at: float
    seconds: float
    status: int | None
    timed_out: bool = False
    retry_after: bool = False

    @property
    def answered_at(self) -> float:
        """When the answer (or the failure) came, on `time.monotonic()`'s clock."""
        return self.sent_at + self.seconds


def probe(
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] = NO_HEADERS,
    timeout: float = 5.0,
) -> Probed:
    """GET `path` once on a fresh connection, as a monitor would, and time it."""
    sent_at, started = time.monotonic(), time.perf_counter()
    try:
        with Connection(port, timeout=timeout, headers=headers) as connection:
            answer = connection.request("GET", path, headers={"Connection": "close"})
    except TimeoutError:
        return Probed(sent_at, time.perf_counter() - started, None, timed_out=True)
    except OSError:
        return Probed(sent_at, time.perf_counter() - started, None)
    seconds = time.perf_counter() - started
    return Probed(sent_at, seconds, answer.status_code, retry_after="retry-after" in answer.headers)


class Prober:
    """`probe` every `every` seconds on a thread of its own, while started (or inside its
    `with` block); `samples` holds what each probe saw."""

    def __init__(
        self,
        port: int,
        path: str,
        every: float,
        *,
        headers: Mapping[str, str] = NO_HEADERS,
        timeout: float = 5.0,
    ) -> None:
        self.samples: list[Probed] = []
        self._probe = lambda: probe(port, path, headers=headers, timeout=timeout)
        self._every = every
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"probe {path}", daemon=True)

    def start(self) -> None:
        """Start probing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop probing, once the probe in flight (if any) has its answer."""
        self._stop.set()
        self._thread.join(self._timeout + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._probe())
            self._stop.wait(self._every)

    def __enter__(self) -> Prober:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
