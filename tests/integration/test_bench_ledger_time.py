"""`tally bench --pattern ledger-time` against a stand-in that speaks the balance and
statement contract (as_of, from/to/limit, JSON with opening and closing balances, CSV
streamed in chunks) from the real database: the scenario seeds, reads, checks every answer
and times them; against a server that ignores `as_of` and has no statement route, it says
so and counts errors instead of timings."""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, text

from ledger.ledger_time import balance_as_of
from tally.bench.ledger_time import run_ledger_time

ENTRIES = 3_000
STATEMENT = 500


def wallet_id(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT max(id) FROM accounts WHERE owner = :o"), {"o": user_id}
        ).scalar_one()


def stand_in(engine: Engine, *, honours_as_of: bool, has_statements: bool) -> type:
    """A request handler answering the contract from the database (entries after `from`,
    up to and including `to`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            *_, user, route = url.path.split("/")
            account = wallet_id(engine, user)
            if "authorization" not in {name.lower() for name in self.headers}:
                self.reply(401, b"{}", "application/json")
            elif route == "balance":
                moment = datetime.fromisoformat(query["as_of"]) if honours_as_of else None
                with engine.connect() as conn:
                    if moment is None:
                        balance = conn.execute(
                            text("SELECT balance FROM accounts WHERE id = :a"), {"a": account}
                        ).scalar_one()
                    else:
                        balance = balance_as_of(conn, account, moment)
                self.reply(200, json.dumps({"balance": balance}).encode(), "application/json")
            elif route == "statement" and has_statements:
                self.statement(account, query)
            else:
                self.reply(404, b'{"code": "not_found"}', "application/json")

        def statement(self, account: int, query: dict[str, str]) -> None:
            since, until = (datetime.fromisoformat(query[k]) for k in ("from", "to"))
            with engine.connect() as conn:
                opening = balance_as_of(conn, account, since)
                closing = balance_as_of(conn, account, until)
                rows = conn.execute(
                    text(
                        "SELECT id, amount, effective_at FROM entries WHERE account_id = :a"
                        " AND effective_at > :f AND effective_at <= :t"
                        " ORDER BY effective_at, id LIMIT :n"
                    ),
                    {"a": account, "f": since, "t": until, "n": int(query.get("limit", 10**9))},
                ).all()
            if self.headers.get("Accept") != "text/csv":
                entries = [{"id": i, "amount": a, "effective_at": str(e)} for i, a, e in rows]
                body = {
                    "opening_balance": opening,
                    "closing_balance": closing,
                    "entries": entries,
                    "totals": {"credits": sum(a for _, a, _ in rows)},
                    "next_cursor": None,
                }
                self.reply(200, json.dumps(body).encode(), "application/json")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = ["id,amount,effective_at\n"] + [f"{i},{a},{e}\n" for i, a, e in rows]
            for start in range(0, len(lines), 100):
                chunk = "".join(lines[start : start + 100]).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

    return Handler


@contextmanager
def served(handler: type) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def scenario(engine: Engine, port: int) -> dict[str, Any]:
    args = argparse.Namespace(
        seed=5, history_entries=ENTRIES, as_of_reads=40, statement_entries=STATEMENT
    )
    # The stand-in serves from this process: its RSS is the "API worker's".
    sampler = SimpleNamespace(pids=lambda role: [os.getpid()])
    bench = SimpleNamespace(args=args, engine=engine)
    return run_ledger_time(bench, port, sampler)  # type: ignore[arg-type]


def test_the_scenario_times_checked_answers_of_a_server_keeping_the_contract(
    engine: Engine,
) -> None:
    with served(stand_in(engine, honours_as_of=True, has_statements=True)) as port:
        result = scenario(engine, port)

    assert (result["errors"], result["error_samples"]) == (0, [])
    assert result["history_entries"] == ENTRIES and result["checkpoints"] == 3
    assert result["as_of"]["reads"] == 40 and result["as_of"]["answered_right"]
    assert 0 < result["as_of"]["http_ms"]["p50"] <= result["as_of"]["http_ms"]["p99"]
    assert result["as_of"]["in_process_ms"]["p50"] > 0
    statements = result["statements"]
    assert statements["entries"] == STATEMENT and statements["json_ms"]["p99"] > 0
    # A header line beside the entries, each window's and the whole history's.
    assert statements["csv_window"]["lines"] == STATEMENT + 1
    assert statements["csv_whole"]["lines"] == ENTRIES + 1
    for csv in (statements["csv_window"], statements["csv_whole"]):
        assert csv["api_rss"]["peak_mb"] >= csv["api_rss"]["before_mb"] > 0
    assert set(result["targets"]) == {
        "as_of_p99_within_20_ms",
        "statement_json_p99_within_250_ms",
        "csv_in_constant_memory",
    }
    assert None not in result["targets"].values()


def test_the_scenario_fails_on_a_server_that_ignores_as_of_and_has_no_statements(
    engine: Engine,
) -> None:
    with served(stand_in(engine, honours_as_of=False, has_statements=False)) as port:
        result = scenario(engine, port)

    as_of_wrong, missing = result["error_samples"]
    assert "balances as of a moment differ" in as_of_wrong
    assert "answered 404 (the statement route is not on this build)" in missing
    assert result["errors"] > 1
    assert result["statements"] == {}
    assert result["targets"] == {
        "as_of_p99_within_20_ms": None,
        "statement_json_p99_within_250_ms": None,
        "csv_in_constant_memory": None,
    }
