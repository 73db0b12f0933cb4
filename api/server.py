"""The serving layer: granian's RSGI interface in front of the Flask app.

Granian (Rust, hyper) owns the sockets: idle and slow connections cost it a future each,
never a Python thread, and it cuts off a client that trickles its headers. This layer adds
what granian leaves to the application:

- the body is read here, asynchronously, with a deadline and a size limit, so a client that
  trickles its body ties up nothing but its own connection and is answered `408` in the end;
- the Flask app then runs in a bounded pool of threads on a fully buffered request;
  `GET /api/v1/health` has a small pool of its own, so that a health check is answered
  promptly however many requests wait for the main pool (load balancers and operators
  read its latency);
- a long-poll (`?wait=`) is parked here, on the event loop, holding no thread: the view
  answers with the current state and leaves a `LongPoll` in the WSGI environ; when the
  transaction's notification arrives (or the wait ends) one thread renders the answer again;
- a streamed answer (a view that sets `STREAMED` in the environ: a statement's CSV) is sent
  chunk by chunk, each chunk made on a pool thread and sent from the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask import Flask

from api.long_poll import ASYNC_LONG_POLL, LONG_POLL, LongPoll
from api.problems import problem_body
from api.respond import STREAMED
from config.settings import API_PROBE_THREADS, Settings

log = logging.getLogger(__name__)

# Served on the probe threads (`API_PROBE_THREADS`), not the request threads.
HEALTH_PATH = "/api/v1/health"

Headers = list[tuple[str, str]]


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes
    long_poll: LongPoll | None = None
    # A streamed answer's body, still to be iterated (and closed) chunk by chunk.
    chunks: Iterator[bytes] | None = None
    close: Callable[[], None] | None = None


class BodyTooLarge(Exception):
    pass


class TallyServer:
    """An RSGI application serving a Flask app (one per granian worker process)."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.executor = ThreadPoolExecutor(settings.api_threads, thread_name_prefix="tally-api")
        self.probe_executor = ThreadPoolExecutor(
            API_PROBE_THREADS, thread_name_prefix="tally-probe"
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    # RSGI hooks -------------------------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.probe_executor.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":  # websockets: not part of the API
            proto.close(403)
            return
        loop = asyncio.get_running_loop()
        try:
            body = await asyncio.wait_for(
                self._read_body(scope, proto), self.settings.api_body_timeout_seconds
            )
        except TimeoutError:
            self._problem(proto, 408, "request_timeout", "The request body came too slowly.")
            return
        except BodyTooLarge:
            limit = self.settings.max_body_bytes
            self._problem(proto, 413, "body_too_large", f"The body is larger than {limit} bytes.")
            return
        except Exception:  # the client went away mid-body: nobody to answer
            return
        environ = wsgi_environ(scope, body)
        probe = scope.path == HEALTH_PATH and scope.method == "GET"
        executor = self.probe_executor if probe else self.executor
        answer = await loop.run_in_executor(executor, self._call_app, environ)
        if answer.chunks is not None:
            await self._stream(loop, proto, answer)
            return
        if answer.long_poll is not None:
            answer.body = await self._long_poll(loop, proto, answer.long_poll, answer.body)
            answer.headers = [
                (name, str(len(answer.body)) if name.lower() == "content-length" else value)
                for name, value in answer.headers
            ]
        proto.response_bytes(answer.status, answer.headers, answer.body)

    # The parts ----------------------------------------------------------------------------

    async def _read_body(self, scope: Any, proto: Any) -> bytes:
        limit = self.settings.max_body_bytes
        declared = scope.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        if declared in (None, "0") and "transfer-encoding" not in scope.headers:
            return b""
        if declared is not None:
            body: bytes = await proto()
            return body
        chunks = []
        size = 0
        async for chunk in proto:  # chunked: count as it comes
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _call_app(self, environ: dict[str, Any]) -> Answer:
        started: dict[str, Any] = {}

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
            started["status"] = int(status[:3])
            started["headers"] = headers
            return lambda data: None  # the legacy write(): Flask never uses it

        result = self.app(environ, start_response)
        if environ.get(STREAMED) and started.get("status") is not None:
            return Answer(
                started["status"],
                started["headers"],
                b"",
                chunks=iter(result),
                close=getattr(result, "close", None),
            )
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return Answer(started["status"], started["headers"], body, environ.get(LONG_POLL))

    async def _long_poll(
        self, loop: asyncio.AbstractEventLoop, proto: Any, poll: LongPoll, body: bytes
    ) -> bytes:
        """Park until the transaction is final or the wait ends; the body to send then."""
        waiter = self.app.extensions["tally"].waiter
        deadline = loop.time() + poll.timeout
        woken = None
        gone = asyncio.ensure_future(proto.client_disconnect())
        try:
            woken = waiter.subscribe_async(poll.transaction_id, loop)
            while True:
                # Subscribed first, then read: a notification between the view's read and
                # the subscription cannot be missed. Cleared before each read, never after:
                # a notification that arrives while the state is being read must wake the
                # wait that follows (clearing it afterwards slept through the outcome).
                woken.clear()
                body, final = await loop.run_in_executor(self.executor, poll.render)
                remaining = deadline - loop.time()
                if final or remaining <= 0:
                    return body
                wake = asyncio.ensure_future(woken.wait())
                done, _ = await asyncio.wait(
                    {wake, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                wake.cancel()
                if gone in done:
                    return body
                if not done:  # the wait is over: one last look
                    body, _ = await loop.run_in_executor(self.executor, poll.render)
                    return body
        finally:
            gone.cancel()
            if woken is not None:
                waiter.unsubscribe_async(poll.transaction_id, woken)
            poll.release()

    async def _stream(self, loop: asyncio.AbstractEventLoop, proto: Any, answer: Answer) -> None:
        """Send a streamed body as it is produced: each chunk is made on a pool thread
        (which may read the database), then sent from the event loop, so a slow client
        holds no thread between chunks."""
        assert answer.chunks is not None
        transport = proto.response_stream(answer.status, answer.headers)
        try:
            while True:
                chunk = await loop.run_in_executor(self.executor, next, answer.chunks, None)
                if chunk is None:
                    return
                await transport.send_bytes(chunk)
        except Exception:  # the client went away, or the body failed midway: nothing to tell
            log.warning("streamed answer ended early", exc_info=True)
        finally:
            if answer.close is not None:
                await loop.run_in_executor(self.executor, answer.close)

    @staticmethod
    def _problem(proto: Any, status: int, code: str, detail: str) -> None:
        body = problem_body(status, code, detail)
        headers = [("content-type", "application/problem+json"), ("connection", "close")]
        proto.response_bytes(status, headers, body)


def wsgi_environ(scope: Any, body: bytes) -> dict[str, Any]:
    """The WSGI environ of an RSGI request whose body has been read whole."""
    host, _, port = scope.server.rpartition(":")
    client_host, _, client_port = scope.client.rpartition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi_path(scope.path),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client_host,
        "REMOTE_PORT": client_port,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        ASYNC_LONG_POLL: True,
    }
    for name, value in scope.headers.items():
        # `Content_Type` would become CONTENT_TYPE too and shadow the real Content-Type (or
        # any header its twin): headers spelled with `_` are dropped, as nginx and gunicorn do.
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole: its length is what we read
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _wsgi_path(path: str) -> str:
    """PATH_INFO as WSGI wants it: the path's UTF-8 bytes as a latin-1 string.

    Granian hands over the path percent-decoded already (`%2561` arrives as `%61`, `%2F` as
    `/`): decoding it again would let `/wallets/%2561lice9` name the wallet `alice9`, so each
    escape is decoded once, there, and never here.
    """
    return path.encode("utf-8").decode("latin-1")


def create_server() -> TallyServer:
    """The RSGI target granian imports in each worker process (`tally api`)."""
    from api.app import create_app

    settings = Settings.from_env()
    server = TallyServer(create_app(settings), settings)
    # Everything built so far lives as long as the process: keep the collector from
    # scanning it again and again, and let it run less often (requests make little that
    # lives on, and garbage collection showed in the API's profile).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return server
