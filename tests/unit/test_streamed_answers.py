"""The serving layer sends a streamed answer chunk by chunk, producing each only after the
previous one was handed to the transport, and closes the body when done."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from flask import Flask, Response, request
from werkzeug.test import EnvironBuilder

from api.respond import STREAMED
from api.server import TallyServer


class Transport:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def send_bytes(self, data: bytes) -> None:
        self.log.append(f"sent {data.decode()}")


class Proto:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.started: tuple[int, Any] | None = None

    def response_stream(self, status: int, headers: Any) -> Transport:
        self.started = (status, headers)
        return Transport(self.log)


def _app(log: list[str]) -> Flask:
    app = Flask(__name__)

    @app.get("/streamed")
    def streamed() -> Response:
        def chunks() -> Iterator[bytes]:
            for n in range(3):
                log.append(f"made {n}")
                yield str(n).encode()
            log.append("done")

        request.environ[STREAMED] = True
        return Response(chunks(), mimetype="text/csv")

    @app.get("/buffered")
    def buffered() -> Response:
        return Response(b"whole", mimetype="text/plain")

    return app


def _server(app: Flask) -> TallyServer:
    settings = SimpleNamespace(api_threads=2, api_body_timeout_seconds=5, max_body_bytes=1024)
    return TallyServer(app, settings)  # type: ignore[arg-type]


def test_a_streamed_answer_is_made_and_sent_one_chunk_at_a_time() -> None:
    proto = Proto()
    server = _server(_app(proto.log))
    answer = server._call_app(EnvironBuilder(path="/streamed").get_environ())
    assert answer.chunks is not None and answer.body == b""
    assert proto.log == []  # nothing is produced before the stream starts

    async def stream() -> None:
        await server._stream(asyncio.get_running_loop(), proto, answer)

    asyncio.run(stream())
    assert proto.started is not None and proto.started[0] == 200
    assert proto.log == ["made 0", "sent 0", "made 1", "sent 1", "made 2", "sent 2", "done"]
    server.executor.shutdown()


def test_an_ordinary_answer_is_still_sent_whole() -> None:
    server = _server(_app([]))
    answer = server._call_app(EnvironBuilder(path="/buffered").get_environ())
    assert (answer.chunks, answer.body) == (None, b"whole")
    server.executor.shutdown()
