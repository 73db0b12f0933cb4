"""The `ledger-time` scenario: as-of balances and statements on one wallet with a long
history, over HTTP, beside the same as-of read run in-process.

The wallet's `--history-entries` top-ups are written straight in SQL
(`ledger.history_seed`: minutes, where the API would take hours), on a tenant of their own.
Then, against the running stack: `--as-of-reads` sequential
`GET /wallets/{user}/balance?asset_code=&as_of=` at random moments of the history, each
answer checked against `ledger.ledger_time.balances_as_of`; statements of windows holding
exactly `--statement-entries` entries (`GET /wallets/{user}/statement?...&limit=`), as JSON
(checked: entry count, opening and closing balances) and as CSV (`Accept: text/csv`), and
the CSV of the whole history, with the API worker processes' RSS sampled before and during
each download. Window bounds fall strictly between two entries, so whether a route counts
`from`/`to` inclusively does not change the expected answers.
"""

from __future__ import annotations

import http.client
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from ledger.statements import MAX_STATEMENT_PAGE
from ledger.vocabulary import Scope
from tally.bench.monitor import PeakRss, ProcessMonitor
from tally.bench.phases import Bench
from tally.bench.report import percentiles
from tally.bench.workloads import ASSET, seed_tenant
from tally.load_client import API, Connection, bearer

USER = "ledger-time"
STATEMENT_WINDOWS = 10
WARM_UP_READS = 50
# The targets: as-of p99 and a statement as JSON, in milliseconds.
AS_OF_P99_TARGET_MS = 20.0
STATEMENT_JSON_TARGET_MS = 250.0
# A whole-history CSV buffered in the API would grow it by about the size of the download
# (tens of MB per 100,000 entries); streamed, it grows no more than a small one does.
CONSTANT_MEMORY_SLACK_MB = 32.0
# Lines of a CSV beside its entries: a header, and perhaps opening and closing rows.
CSV_EXTRA_LINES = 4
TIMEOUT_SECONDS = 600.0


class Problems:
    """What went wrong, counted, with the first few described."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def add(self, what: str, count: int = 1) -> None:
        self.count += count
        if len(self.samples) < 10:
            self.samples.append(what)
            print(f"  ledger-time: {what}", flush=True)


def rfc3339(moment: datetime) -> str:
    """`moment` as RFC 3339 in UTC, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_millisecond(moment: datetime) -> datetime:
    """`moment` truncated to what `rfc3339` sends."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class LedgerTime:
    """The seeded wallet, the stack's port and what the scenario measured so far."""

    def __init__(self, bench: Bench, port: int, sampler: ProcessMonitor) -> None:
        self.bench = bench
        self.args = bench.args
        self.port = port
        self.sampler = sampler
        self.rng = random.Random(self.args.seed)
        self.problems = Problems()
        self.api_key = ""
        self.wallet_id = 0
        self.times: dict[int, datetime] = {}

    def seed(self) -> dict[str, Any]:
        """The wallet's history, written in SQL on a tenant of its own; what was written."""
        from ledger.db import unit_of_work
        from ledger.history_seed import refresh_statistics, seed_wallet_history

        count = self.args.history_entries
        tenant = seed_tenant(self.bench.engine, "bench-ledger-time")
        self.api_key = tenant.key(Scope.ADMIN)
        print(f"  ledger-time: seeding {count} top-ups of one wallet in SQL ...", flush=True)
        started = time.perf_counter()
        with unit_of_work(self.bench.engine) as work:
            seeded = seed_wallet_history(work.connection, tenant.id, ASSET, USER, count)
        seeded_at = time.perf_counter()
        with unit_of_work(self.bench.engine) as work:
            refresh_statistics(work.connection)
        self.wallet_id = seeded.wallet_id
        seconds = round(seeded_at - started, 1)
        print(f"  ledger-time: seeded in {seconds} s", flush=True)
        return {
            "history_entries": count,
            "backdated": seeded.backdated,
            "checkpoints": seeded.checkpoints,
            "seed_seconds": seconds,
            "analyze_seconds": round(time.perf_counter() - seeded_at, 1),
        }

    def effective(self, positions: list[int]) -> list[datetime]:
        """The effective times of the wallet's entries at these positions (1-based)."""
        from ledger.history_seed import effective_times_at

        missing = [p for p in positions if p not in self.times]
        if missing:
            with self.bench.engine.connect() as conn:
                self.times.update(effective_times_at(conn, self.wallet_id, missing))
        return [self.times[p] for p in positions]

    def as_of(self, moment: datetime) -> int:
        """The wallet's balance as of `moment`, read in-process."""
        from ledger.ledger_time import balance_as_of

        with self.bench.engine.connect() as conn:
            return balance_as_of(conn, self.wallet_id, moment)

    def path(self, route: str, **query: Any) -> str:
        return f"{API}/wallets/{quote(USER)}/{route}?{urlencode({'asset_code': ASSET, **query})}"

    def measure_as_of(self) -> dict[str, Any]:
        """Sequential as-of reads over HTTP, each checked; then the same reads in-process."""
        first, last = self.effective([1, self.args.history_entries])
        span = (last - first).total_seconds()
        moments = [
            to_millisecond(first + timedelta(seconds=self.rng.uniform(0, span)))
            for _ in range(WARM_UP_READS + self.args.as_of_reads)
        ]
        print(f"  ledger-time: {self.args.as_of_reads} balances as of a moment ...", flush=True)
        answered: list[Any] = []
        http_seconds: list[float] = []
        with Connection(self.port, headers=bearer(self.api_key), timeout=60) as connection:
            for number, moment in enumerate(moments):
                started = time.perf_counter()
                answer = connection.request("GET", self.path("balance", as_of=rfc3339(moment)))
                if number >= WARM_UP_READS:
                    http_seconds.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    self.problems.add(
                        f"GET .../balance?as_of= answered {answer.status_code}: {answer.text[:200]}"
                    )
                    break
                answered.append(answer.json().get("balance"))
        from ledger.ledger_time import balance_as_of

        in_process: list[float] = []
        expected: list[int] = []
        with self.bench.engine.connect() as conn:
            for number, moment in enumerate(moments):
                started = time.perf_counter()
                expected.append(balance_as_of(conn, self.wallet_id, moment))
                if number >= WARM_UP_READS:
                    in_process.append(time.perf_counter() - started)
        wrong = [
            f"as of {rfc3339(moment)} the API said {said!r}, not {balance}"
            for moment, said, balance in zip(moments, answered, expected, strict=False)
            if said != balance
        ]
        if wrong:
            self.problems.add(
                f"{len(wrong)} of {len(answered)} balances as of a moment differ from the "
                f"ledger's (is as_of honoured?); first: {wrong[0]}",
                len(wrong),
            )
        return {
            "reads": len(http_seconds),
            # Timings of wrong or refused answers measure nothing.
            "answered_right": len(answered) - len(wrong) == len(moments),
            "http_ms": percentiles(http_seconds),
            "in_process_ms": percentiles(in_process),
        }

    def window(self, size: int) -> tuple[datetime, datetime] | None:
        """`from` and `to` holding exactly `size` entries, each strictly between two
        entries (a few tries: millisecond bounds may fall on an entry)."""
        count = self.args.history_entries
        for _ in range(20):
            start = self.rng.randint(2, count - size)
            before, first, last, after = self.effective(
                [start - 1, start, start + size - 1, start + size]
            )
            since = to_millisecond(before + (first - before) / 2)
            until = to_millisecond(last + (after - last) / 2)
            if before < since < first and last < until < after:
                return since, until
        return None

    def measure_statements(self) -> dict[str, Any]:
        """Statements of `--statement-entries` as JSON and CSV, and the whole history's CSV."""
        size = self.args.statement_entries
        windows = [w for w in (self.window(size) for _ in range(STATEMENT_WINDOWS + 1)) if w]
        if len(windows) < 2:
            self.problems.add(f"no window of {size} entries has bounds between two entries")
            return {}
        print(
            f"  ledger-time: {len(windows) - 1} statements of {size} entries as JSON ...",
            flush=True,
        )
        json_seconds: list[float] = []
        with Connection(self.port, headers=bearer(self.api_key), timeout=120) as connection:
            # The first window warms the route up, unmeasured.
            for number, (since, until) in enumerate(windows):
                started = time.perf_counter()
                body = self.read_statement(connection, since, until, size)
                seconds = time.perf_counter() - started
                if body is None:
                    return {}
                if number:
                    json_seconds.append(seconds)
                if not self.statement_holds(body, since, until, size):
                    return {}
        first, last = self.effective([1, self.args.history_entries])
        whole = (to_millisecond(first - timedelta(seconds=1)), last + timedelta(seconds=1))
        print(f"  ledger-time: CSV of {size} entries, then of all of them ...", flush=True)
        return {
            "entries": size,
            "page_size": min(size, MAX_STATEMENT_PAGE),
            "json_ms": percentiles(json_seconds),
            "csv_window": self.download_csv(*windows[1], size),
            "csv_whole": self.download_csv(*whole, self.args.history_entries),
        }

    def read_statement(
        self, connection: Connection, since: datetime, until: datetime, size: int
    ) -> dict[str, Any] | None:
        """A whole statement as JSON, page after page of the most a page holds, as a client
        reads it: the first page's answer with every page's entries (None on a problem)."""
        query: dict[str, Any] = {
            "from": rfc3339(since), "to": rfc3339(until), "limit": min(size, MAX_STATEMENT_PAGE),
        }  # fmt: skip
        whole: dict[str, Any] | None = None
        while True:
            answer = connection.request("GET", self.path("statement", **query))
            if answer.status_code != 200:
                missing = " (the statement route is not on this build)"
                self.problems.add(
                    f"GET .../statement answered {answer.status_code}"
                    f"{missing if answer.status_code == 404 else ''}: {answer.text[:200]}"
                )
                return None
            page = answer.json()
            if whole is None:
                whole = page
            else:
                whole["entries"].extend(page["entries"])
            if not page.get("next_cursor"):
                return whole
            query["cursor"] = page["next_cursor"]

    def statement_holds(self, body: Any, since: datetime, until: datetime, size: int) -> bool:
        """Whether a JSON statement holds the window's entries and its opening and closing
        balances (a problem if not: its timings would measure nothing)."""
        got = (
            len(body.get("entries") or []),
            body.get("opening_balance"),
            body.get("closing_balance"),
        )
        expected = (size, self.as_of(since), self.as_of(until))
        if got != expected:
            self.problems.add(
                f"statement {rfc3339(since)}..{rfc3339(until)}: (entries, opening, closing) "
                f"{got}, expected {expected}"
            )
        return got == expected

    def download_csv(self, since: datetime, until: datetime, entries: int) -> dict[str, Any]:
        """Stream one statement as CSV, counting its lines, while sampling the API workers'
        RSS; its time, first byte, size and memory."""
        query = {"from": rfc3339(since), "to": rfc3339(until)}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_SECONDS)
        lines = size = 0
        first_byte = None
        with PeakRss(self.sampler.pids("api_worker")) as rss:
            started = time.perf_counter()
            headers = {**bearer(self.api_key), "Accept": "text/csv"}
            connection.request("GET", self.path("statement", **query), headers=headers)
            response = connection.getresponse()
            while chunk := response.read(65536):
                first_byte = first_byte or time.perf_counter()
                lines += chunk.count(b"\n")
                size += len(chunk)
            seconds = time.perf_counter() - started
        connection.close()
        content_type = response.getheader("Content-Type") or ""
        if response.status != 200 or not content_type.startswith("text/csv"):
            self.problems.add(f"CSV statement answered {response.status} ({content_type})")
        elif not entries <= lines <= entries + CSV_EXTRA_LINES:
            self.problems.add(f"CSV statement of {entries} entries had {lines} lines")
        return {
            "entries": entries,
            "lines": lines,
            "bytes": size,
            "seconds": round(seconds, 3),
            "first_byte_ms": round((first_byte - started) * 1000, 1) if first_byte else None,
            "api_rss": rss.summary(),
        }


def run_ledger_time(bench: Bench, port: int, sampler: ProcessMonitor) -> dict[str, Any]:
    """Seed the wallet, measure its reads; the report's `ledger_time` section."""
    scenario = LedgerTime(bench, port, sampler)
    result: dict[str, Any] = scenario.seed()
    result["as_of"] = scenario.measure_as_of()
    result["statements"] = scenario.measure_statements()
    result["targets"] = targets(result)
    result["errors"] = scenario.problems.count
    result["error_samples"] = scenario.problems.samples
    return result


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each of the issue's targets: met, missed, or None when it was not measured."""
    as_of = result["as_of"]
    as_of_p99 = as_of["http_ms"]["p99"] if as_of["answered_right"] else None
    statements = result["statements"]
    json_p99 = statements["json_ms"]["p99"] if statements else None
    if statements:
        small = statements["csv_window"]["api_rss"]["growth_mb"]
        whole = statements["csv_whole"]["api_rss"]["growth_mb"]
        constant: bool | None = whole <= small + CONSTANT_MEMORY_SLACK_MB
    else:
        constant = None
    return {
        "as_of_p99_within_20_ms": None if as_of_p99 is None else as_of_p99 <= AS_OF_P99_TARGET_MS,
        "statement_json_p99_within_250_ms": None
        if json_p99 is None
        else json_p99 <= STATEMENT_JSON_TARGET_MS,
        "csv_in_constant_memory": constant,
    }
