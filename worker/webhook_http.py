"""One webhook POST over the standard library's HTTP client, to a checked address.

The host is resolved once and every address checked (`ledger.webhooks.targets`); the
connection goes to a checked address while the Host header and TLS name stay the URL's
host. Redirects are not followed: a 3xx is a failed attempt like any other non-2xx.
Nothing raises out of `post_webhook`: whatever goes wrong is the attempt's error, so the
attempt is recorded and the retry schedule decides what comes next.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ledger.webhooks.dispatch import AttemptResult
from ledger.webhooks.targets import Target, TargetRefused, parse_target, resolve_target

USER_AGENT = "Tally-Webhooks/1.0"
# Only the start of a response is kept for the attempt log; the rest is never read.
MAX_RESPONSE_BYTES = 1024


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a given address, whatever the host name resolves to by now."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address; the certificate is still checked against the host name."""

    def __init__(self, target: Target, address: str, timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


_TLS = ssl.create_default_context()


def _connection(target: Target, address: str, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPSConnection(target, address, timeout, _TLS)
    return _PinnedHTTPConnection(target, address, timeout)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    # isdigit() alone accepts "²" and other digits float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error}"
    return f"{type(error).__name__}: {error}".rstrip(": ")


def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
) -> AttemptResult:
    """POST the body to the URL within `timeout` seconds overall; never raises."""
    attempted_at = datetime.now(UTC)
    started = time.monotonic()
    try:
        return _post(url, body, headers, timeout=timeout, allow_private=allow_private)
    except Exception as error:  # a bug or an answer http.client chokes on: still an attempt
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return AttemptResult(attempted_at, elapsed_ms, error=f"internal error: {_describe(error)}")


def _post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> AttemptResult:
    attempted_at = datetime.now(UTC)
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = parse_target(url)
        addresses = resolve_target(target, allow_private=allow_private)
    except TargetRefused as refused:
        return AttemptResult(attempted_at, elapsed_ms(), error=f"refused: {refused.message}")

    # The socket timeout bounds each read; the watchdog bounds the whole exchange, so a
    # receiver trickling bytes cannot hold a sender longer than `timeout`.
    current: list[http.client.HTTPConnection] = []
    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        for connection in current:
            if connection.sock is not None:
                with suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, cut_off)
    watchdog.daemon = True
    watchdog.start()
    request_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    try:
        last_error: BaseException | None = None
        for address in addresses:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0 or expired.is_set():
                break
            connection = _connection(target, address, remaining)
            current.append(connection)
            try:
                connection.connect()
            except OSError as error:
                last_error = error
                connection.close()
                continue
            try:
                connection.request("POST", target.path, body=body, headers=request_headers)
                response = connection.getresponse()
                # The cut-off ends the head with an EOF that http.client takes for its
                # blank line: a head that was still arriving then is a timeout, not an answer.
                if expired.is_set():
                    break
                content = response.read(MAX_RESPONSE_BYTES)
            finally:
                connection.close()
            return AttemptResult(
                attempted_at,
                elapsed_ms(),
                status_code=response.status,
                response_body=content.decode("utf-8", "replace"),
                retry_after_seconds=parse_retry_after(response.getheader("Retry-After")),
                reason=response.reason,
            )
        if expired.is_set() or last_error is None or isinstance(last_error, TimeoutError):
            return AttemptResult(attempted_at, elapsed_ms(), error=f"timed out after {timeout}s")
        return AttemptResult(attempted_at, elapsed_ms(), error=_describe(last_error))
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set() or isinstance(error, TimeoutError):
            return AttemptResult(attempted_at, elapsed_ms(), error=f"timed out after {timeout}s")
        return AttemptResult(attempted_at, elapsed_ms(), error=_describe(error))
    finally:
        watchdog.cancel()
