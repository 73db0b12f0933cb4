"""`tally bench --pattern chaos`: sustained load while Tally's processes, its database, its
broker and the merchant's webhook receiver fail, then proof that nothing accepted was lost
or applied twice.

The run owns what it breaks: a PostgreSQL of its own (pgserver, restarted with a fast
shutdown) and, on Redis, a `redis-server` of its own (append-only, restarted with
SHUTDOWN); on RabbitMQ it restarts the given broker's application (`rabbitmqctl stop_app`,
`start_app`), so it needs a RabbitMQ it may restart. Clients behave as a merchant's should:
a submission that gets no answer, a 503 or a 429 is sent again, same body, same
reference_id, until it is accepted.

What it checks at the end, each a violation if it fails (and the exit code is then 1):
every accepted submission has exactly one transaction with a final outcome and none is
`failed`; no transaction wrote its journal twice; the ledger's invariants hold; every
applied or rejected transaction's event reached the receiver with a valid signature;
nothing was ever answered 500 or left hanging past the client's timeout; while the
database was down the API answered 503 with Retry-After, and served again within 5 s of
the database coming back.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine

from ledger.db import make_engine
from ledger.vocabulary import Scope
from tally.bench.phases import BenchError
from tally.bench.workloads import ASSET, seed_tenant
from tally.stack import Children, StackError, delete_queue, free_port, scratch_database

CLIENT_TIMEOUT_SECONDS = 10.0
RECOVERY_LIMIT_SECONDS = 5.0
STARTUP_TIMEOUT_SECONDS = 60.0
WALLETS = 200
FUNDING = 10**9
# Retries close together, so that a delivery the receiver missed while down arrives within
# the run (the production schedule waits minutes between late attempts).
CHAOS_WEBHOOK_SCHEDULE = "0,1,2,3,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5"
SENDERS = 24


# --- the parts the run breaks ------------------------------------------------------------


class OwnPostgres:
    """A PostgreSQL of the run's own (pgserver, on a socket in the run's folder), which it
    may stop and start."""

    def __init__(self, work_dir: Path) -> None:
        # platformdirs warns that XDG_RUNTIME_DIR is unset (usual under root); pgserver copes.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

        pgdata = work_dir / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        import pgserver

        pgserver.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


class OwnRedis:
    """A redis-server of the run's own on a loopback port, append-only, restartable."""

    def __init__(self, work_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError(
                "the chaos run needs redis-server on PATH (apt-get install redis-server)"
            )
        self.dir = work_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.command = [
            binary,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--maxmemory-policy", "noeviction"),
        ]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 (the server's own log)
        self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        _until(lambda: _answers(client.ping), 10, "redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # SHUTDOWN: flushes the append-only file
            self.process.wait(30)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


class RestartableRabbit:
    """The given RabbitMQ, restarted as an application (its queues and messages stay)."""

    def __init__(self, url: str) -> None:
        if shutil.which("rabbitmqctl") is None:
            raise BenchError("the chaos run on RabbitMQ needs rabbitmqctl to restart the broker")
        self.url = url

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)

    def start(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], check=False, timeout=60
        )

    def close(self) -> None:
        pass


class Receiver:
    """The merchant's webhook endpoint on loopback: checks each delivery's signature, and
    can be taken down (its port refuses connections) and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""
        self.valid: set[str] = set()
        self.invalid: list[str] = []  # message ids whose complete body did not verify
        self.truncated = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.up()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tally-webhooks"

    def up(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                declared = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(declared)
                if len(body) < declared:
                    # The sender gave up mid-body (its timeout): nothing to judge, and it
                    # records the attempt as failed and tries again.
                    receiver.truncated += 1
                    return
                receiver.record(self.headers, body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record(self, headers: Any, body: bytes) -> None:
        from ledger.webhooks.signing import sign

        message_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "").split()
        ok = (
            timestamp.isdigit()
            and sign(self.secret, message_id, int(timestamp), body) in signatures
        )
        with self._lock:
            if ok:
                self.valid.add(message_id)
            else:
                self.invalid.append(message_id)


# --- the load ------------------------------------------------------------------------------


@dataclass
class Submission:
    body: dict[str, Any]
    path: str
    accepted_id: str | None = None
    attempts: int = 0


@dataclass
class Answers:
    """Every HTTP answer the clients got, by kind."""

    statuses: Counter[str] = field(default_factory=Counter)
    hung: int = 0  # no answer within the client's timeout
    without_retry_after: int = 0  # 503s missing it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1


class Load:
    """Open-loop submissions at `rate` per second from a pool of sender threads; each one is
    resent until accepted (or the run gives up on it)."""

    def __init__(self, base_url: str, api_key: str, rate: float, bulk_share: float) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.rate = rate
        self.bulk_share = bulk_share
        self.submissions: list[Submission] = []
        self.answers = Answers()
        self._todo: queue.Queue[Submission | None] = queue.Queue()
        self._rng = random.Random(7)
        self._stop_sending = threading.Event()
        self._threads: list[threading.Thread] = []

    def _item(self, index: int) -> dict[str, Any]:
        user = f"w{self._rng.randrange(WALLETS)}"
        item: dict[str, Any] = {
            "asset_code": ASSET,
            "amount": self._rng.randint(1, 500),
            "reference_id": f"chaos-{index}",
            "user_id": user,
        }
        roll = self._rng.random()
        if roll < 0.4:
            item.update(type="topup", payment_method="card")
        elif roll < 0.7:
            item.update(type="transfer", to_user_id=f"w{(int(user[1:]) + 1) % WALLETS}")
        else:
            item.update(type="spend", item_id="sku-1")
        return item

    def run(self, seconds: float) -> None:
        """Offer load for `seconds` (returns when the last submission is handed out)."""
        self._threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(SENDERS)]
        for thread in self._threads:
            thread.start()
        started = time.monotonic()
        index = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * self.rate)
            while index < due:
                if self._rng.random() < self.bulk_share:
                    items = [self._item(index + n) for n in range(10)]
                    index += 10
                    submission = Submission({"transactions": items}, "/transactions/batch")
                else:
                    submission = Submission(self._item(index), "/transactions")
                    index += 1
                self.submissions.append(submission)
                self._todo.put(submission)
            time.sleep(0.005)  # the open loop's tick

    def finish(self, timeout: float) -> None:
        """Wait until every submission is accepted (or `timeout`), then stop the senders."""
        deadline = time.monotonic() + timeout
        while self._todo.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop_sending.set()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def _sender(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        while (submission := self._todo.get()) is not None:
            try:
                if not self._send(session, submission) and not self._stop_sending.is_set():
                    time.sleep(0.2)  # a merchant's back-off before sending it again
                    self._todo.put(submission)
            finally:
                self._todo.task_done()

    def _send(self, session: requests.Session, submission: Submission) -> bool:
        submission.attempts += 1
        try:
            response = session.post(
                f"{self.base_url}/api/v1{submission.path}",
                json=submission.body,
                timeout=CLIENT_TIMEOUT_SECONDS,
            )
        except requests.Timeout:
            with self.answers.lock:
                self.answers.hung += 1
            return False
        except requests.ConnectionError:
            self.answers.count("no connection")
            return False
        self.answers.count(str(response.status_code))
        if response.status_code == 503 and "Retry-After" not in response.headers:
            with self.answers.lock:
                self.answers.without_retry_after += 1
        if response.status_code not in (200, 202):
            return False
        answer = response.json()
        if submission.path.endswith("/batch"):
            accepted = [r for r in answer["results"] if r["outcome"] in ("accepted", "replayed")]
            if len(accepted) != len(submission.body["transactions"]):
                return False
            submission.accepted_id = ",".join(r["transaction"]["id"] for r in accepted)
        else:
            submission.accepted_id = answer["id"]
        return True

    def accepted_ids(self) -> list[str]:
        return [
            transaction_id
            for submission in self.submissions
            if submission.accepted_id
            for transaction_id in submission.accepted_id.split(",")
        ]


class Prober:
    """Reads one transaction every 100 ms and notes each answer's time and status."""

    def __init__(self, base_url: str, api_key: str, transaction_id: str) -> None:
        self.url = f"{base_url}/api/v1/transactions/{transaction_id}"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.samples: list[tuple[float, str, bool]] = []  # (time, status, Retry-After given)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def _probe(self) -> None:
        while not self._stop.wait(0.1):
            try:
                answer = requests.get(
                    self.url, headers=self.headers, timeout=CLIENT_TIMEOUT_SECONDS
                )
                status, retry_after = str(answer.status_code), "Retry-After" in answer.headers
            except requests.Timeout:
                status, retry_after = "hung", False
            except requests.ConnectionError:
                status, retry_after = "no connection", False
            self.samples.append((time.monotonic(), status, retry_after))


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds into the load
    what: str
    done_at: float = 0.0


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
        return True
    except Exception:
        return False


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a condition with a deadline


@contextlib.contextmanager
def _broker(args: argparse.Namespace, work_dir: Path) -> Iterator[Any]:
    if args.broker == "amqp":
        url = args.broker_url or os.environ.get("TALLY_BENCH_AMQP_URL")
        if not url:
            raise BenchError("--broker amqp needs --broker-url or TALLY_BENCH_AMQP_URL")
        broker: Any = RestartableRabbit(url)
    else:
        broker = OwnRedis(work_dir)
    try:
        yield broker
    finally:
        broker.close()


def run_chaos(args: argparse.Namespace) -> int:
    """The chaos run; 0 when no violation was found."""
    if args.database_url:
        print("tally bench: --pattern chaos runs a PostgreSQL of its own (it restarts it)")
    work_dir = Path(tempfile.mkdtemp(prefix="tally-chaos-"))
    postgres: OwnPostgres | None = None
    try:
        postgres = OwnPostgres(work_dir)
        with (
            scratch_database(postgres.url, "tally_chaos", keep=False) as database_url,
            _broker(args, work_dir) as broker,
        ):
            report = _chaos(args, postgres, broker, database_url, work_dir)
    except (BenchError, StackError, subprocess.SubprocessError) as error:
        print(f"tally bench: {error}\ntally bench: logs are in {work_dir}")
        return 1
    finally:
        if postgres is not None:
            with contextlib.suppress(Exception):
                postgres.start()
            postgres.close()
    print_chaos_report(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if report["violations"]:
        print(f"tally bench: logs are in {work_dir}")
        return 1
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _seed(database_url: str) -> tuple[str, str]:
    engine = make_engine(database_url, pool_size=1)
    tenant = seed_tenant(engine, "chaos")
    engine.dispose()
    return str(tenant.id), tenant.key(Scope.ADMIN)


def _chaos(
    args: argparse.Namespace, postgres: OwnPostgres, broker: Any, database_url: str, work_dir: Path
) -> dict[str, Any]:
    seconds = args.chaos_seconds
    rate = args.rate or 300.0
    tenant_id, api_key = _seed(database_url)
    queue_name = f"tally-chaos-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BROKER_URL=broker.url,
        TALLY_QUEUE=queue_name,
        TALLY_LOG_LEVEL="WARNING",
        TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        TALLY_WEBHOOK_RETRY_SCHEDULE=CHAOS_WEBHOOK_SCHEDULE,
        TALLY_RELAY_AGE_SECONDS="2",
    )
    children = Children(env, log_dir=work_dir)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    receiver = Receiver()
    faults: list[Fault] = []
    try:
        children.start("api", "api", "--port", str(port), "--workers", "2", "--threads", "16")
        workers = ["worker-a", "worker-b"]
        for name in workers:
            children.start(name, "worker", "--loglevel", "WARNING")
        children.start("relay", "relay")
        children.wait_for_api(base_url, STARTUP_TIMEOUT_SECONDS)
        admin = requests.Session()
        admin.headers["Authorization"] = f"Bearer {api_key}"
        created = admin.post(
            f"{base_url}/api/v1/webhook-endpoints", json={"url": receiver.url()}, timeout=30
        )
        if created.status_code != 201:
            raise BenchError(f"could not register the webhook endpoint: {created.text}")
        receiver.secret = created.json()["secret"]
        funding = admin.post(
            f"{base_url}/api/v1/transactions/batch",
            json={
                "transactions": [
                    {"type": "topup", "user_id": f"w{n}", "asset_code": ASSET,
                     "amount": FUNDING, "reference_id": f"fund-{n}", "payment_method": "card"}
                    for n in range(WALLETS)
                ]
            },
            timeout=60,
        )  # fmt: skip
        if funding.status_code != 200:
            raise BenchError(f"funding failed: {funding.text}")
        probe_id = funding.json()["results"][0]["transaction"]["id"]

        load = Load(base_url, api_key, rate, bulk_share=0.03)
        prober = Prober(base_url, api_key, probe_id)
        schedule = _schedule(seconds)
        print(
            f"tally bench: chaos on {args.broker}: {rate:.0f}/s offered for {seconds:.0f} s;"
            f" faults: {', '.join(f'{f.what} at {f.at:.0f}s' for f in schedule)}",
            flush=True,
        )
        prober.start()
        started = time.monotonic()
        injector = threading.Thread(
            target=_inject,
            args=(schedule, started, children, workers, postgres, broker, receiver, faults),
            daemon=True,
        )
        injector.start()
        load.run(seconds)
        load_ended = time.monotonic()
        injector.join(120)
        load.finish(timeout=120)
        # One engine for every check after the load (PostgreSQL has restarted by then).
        checks = make_engine(database_url, pool_size=1)
        drained = _wait_drained(checks, tenant_id, timeout=300)
        drain_seconds = time.monotonic() - load_ended
        prober.stop()
        delivered = _wait_webhooks(checks, tenant_id, receiver, timeout=120)
    finally:
        children.stop()
        receiver.down()
        delete_queue(broker.url, queue_name)
    try:
        return _verdict(
            args, checks, tenant_id, load, prober, faults, receiver, drained, drain_seconds,
            delivered, seconds, rate,
        )  # fmt: skip
    finally:
        checks.dispose()


def _schedule(seconds: float) -> list[Fault]:
    """Worker kills every ~10 s; the relay, PostgreSQL, the broker and the receiver once."""
    plan = [Fault(at, "kill a worker") for at in range(5, int(seconds) - 2, 10)]
    plan += [
        Fault(seconds * 0.2, "kill the relay"),
        Fault(seconds * 0.35, "restart PostgreSQL"),
        Fault(seconds * 0.55, "restart the broker"),
        Fault(seconds * 0.7, "take the receiver down"),
    ]
    return sorted(plan, key=lambda fault: fault.at)


DATABASE_DOWN_SECONDS = 4.0


def _inject(
    schedule: list[Fault],
    started: float,
    children: Children,
    workers: list[str],
    postgres: OwnPostgres,
    broker: Any,
    receiver: Receiver,
    faults: list[Fault],
) -> None:
    kills = 0
    outages: list[threading.Thread] = []
    receiver_down_seconds = min(30.0, max(5.0, (schedule[-1].at if schedule else 30) * 0.4))
    for fault in schedule:
        delay = started + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the fault's moment in the schedule
        fault.at = time.monotonic() - started
        if fault.what == "kill a worker":
            name = workers[kills % len(workers)]
            kills += 1
            children.kill(name, sig=signal.SIGKILL)
            children.start(name, "worker", "--loglevel", "WARNING")
        elif fault.what == "kill the relay":
            children.kill("relay", sig=signal.SIGKILL)
            children.start("relay", "relay")
        elif fault.what == "restart PostgreSQL":
            postgres.stop()
            # Back after the outage being measured; the schedule goes on meanwhile.
            _later(DATABASE_DOWN_SECONDS, postgres.start, fault, started, outages)
            faults.append(fault)
            continue
        elif fault.what == "restart the broker":
            broker.stop()
            broker.start()
        elif fault.what == "take the receiver down":
            receiver.down()
            _later(receiver_down_seconds, receiver.up, fault, started, outages)
            faults.append(fault)
            continue
        fault.done_at = time.monotonic() - started
        faults.append(fault)
    for outage in outages:
        outage.join()


def _later(
    delay: float,
    restore: Callable[[], None],
    fault: Fault,
    started: float,
    outages: list[threading.Thread],
) -> None:
    """End an outage after `delay` seconds, in a thread of its own; note when it ended."""

    def end() -> None:
        time.sleep(delay)  # the outage's length
        restore()
        fault.done_at = time.monotonic() - started

    thread = threading.Thread(target=end, daemon=True)
    thread.start()
    outages.append(thread)


def _wait_drained(engine: Engine, tenant_id: str, timeout: float) -> bool:
    from sqlalchemy import text

    query = text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND status = 'queued'")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), engine.connect() as conn:
            if conn.execute(query, {"t": tenant_id}).scalar_one() == 0:
                return True
        time.sleep(0.2)  # polling the backlog
    return False


def _decided_message_ids(engine: Engine, tenant_id: str) -> set[str]:
    from sqlalchemy import text

    from ledger.webhooks.signing import message_id

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT e.id FROM events e JOIN transactions t ON t.id = e.transaction_id"
                " WHERE t.tenant_id = :t AND t.status IN ('applied', 'rejected')"
            ),
            {"t": tenant_id},
        ).scalars()
        return {message_id(event_id) for event_id in rows}


def _wait_webhooks(engine: Engine, tenant_id: str, receiver: Receiver, timeout: float) -> int:
    """Wait until the receiver has every decided transaction's event; how many are missing."""
    wanted = _decided_message_ids(engine, tenant_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = wanted - receiver.valid
        if not missing:
            return 0
        time.sleep(0.5)  # polling the receiver's record
    return len(wanted - receiver.valid)


def _verdict(
    args: argparse.Namespace,
    engine: Engine,
    tenant_id: str,
    load: Load,
    prober: Prober,
    faults: list[Fault],
    receiver: Receiver,
    drained: bool,
    drain_seconds: float,
    webhooks_missing: int,
    seconds: float,
    rate: float,
) -> dict[str, Any]:
    from sqlalchemy import text

    from ledger.verify import verify_ledger

    violations: list[str] = []
    accepted = load.accepted_ids()
    never_accepted = [s for s in load.submissions if not s.accepted_id]
    if never_accepted:
        violations.append(f"{len(never_accepted)} submissions were never accepted")
    with engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT status, count(*) FROM transactions"
                    " WHERE tenant_id = :t AND reference_id LIKE 'chaos-%' GROUP BY status"
                ),
                {"t": tenant_id},
            ).all()
        )
        found = conn.execute(
            text(
                "SELECT count(*) FROM transactions WHERE tenant_id = :t AND id = ANY(:ids)"
                " AND status IN ('applied', 'rejected')"
            ),
            {"t": tenant_id, "ids": [uuid.UUID(i) for i in accepted]},
        ).scalar_one()
        doubled = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT transaction_id, account_id FROM entries"
                " WHERE tenant_id = :t GROUP BY 1, 2 HAVING count(*) > 1) twice"
            ),
            {"t": tenant_id},
        ).scalar_one()
        report_lines = verify_ledger(conn, uuid.UUID(tenant_id))
    if len(set(accepted)) != len(accepted):
        violations.append("one transaction id was answered for two submissions")
    if found != len(set(accepted)):
        violations.append(
            f"{len(set(accepted)) - found} accepted submissions have no applied or rejected"
            " transaction"
        )
    if statuses.get("failed"):
        violations.append(f"{statuses['failed']} transactions failed")
    if doubled:
        violations.append(f"{doubled} journal lines were written twice")
    if not report_lines.ok:
        violations.append("ledger invariants violated: " + "; ".join(report_lines.lines()))
    if not drained:
        violations.append("the backlog did not drain within 300 s of the load's end")
    if webhooks_missing:
        violations.append(
            f"{webhooks_missing} decided transactions' events never reached the receiver"
        )
    if receiver.invalid:
        violations.append(
            f"{len(receiver.invalid)} webhook deliveries had no valid signature:"
            f" {', '.join(receiver.invalid[:5])}"
        )
    answers = load.answers
    if answers.statuses.get("500"):
        violations.append(f"{answers.statuses['500']} submissions were answered 500")
    if answers.hung:
        violations.append(
            f"{answers.hung} submissions got no answer within {CLIENT_TIMEOUT_SECONDS:.0f} s"
        )
    if answers.without_retry_after:
        violations.append(f"{answers.without_retry_after} 503 answers had no Retry-After")
    outage = _database_outage(prober, faults)
    violations += outage.pop("violations")
    return {
        "broker": args.broker,
        "offered_rate": rate,
        "seconds": seconds,
        "submissions": len(load.submissions),
        "transactions_accepted": len(accepted),
        "resent": sum(s.attempts - 1 for s in load.submissions),
        "answers": dict(answers.statuses),
        "statuses": statuses,
        "faults": [
            {"what": f.what, "at_s": round(f.at, 1), "done_at_s": round(f.done_at, 1)}
            for f in faults
        ],
        "database_outage": outage,
        "drain_seconds": round(drain_seconds, 1),
        "webhooks_received": len(receiver.valid),
        "webhook_bodies_cut_off": receiver.truncated,
        "violations": violations,
    }  # fmt: skip


def _database_outage(prober: Prober, faults: list[Fault]) -> dict[str, Any]:
    """What the prober saw while PostgreSQL was down and after it came back."""
    restart = next((f for f in faults if f.what == "restart PostgreSQL"), None)
    if restart is None or not prober.samples:
        return {"violations": ["the database restart did not happen"]}
    start = prober.samples[0][0]
    down_from, back_at = restart.at, restart.done_at
    during = [(t - start, s, r) for t, s, r in prober.samples if down_from <= t - start <= back_at]
    after = [(t - start, s) for t, s, _ in prober.samples if t - start > back_at]
    statuses = Counter(s for _, s, _ in during)
    violations = []
    if any(s not in ("200", "503") for s in statuses):
        violations.append(f"during the database outage the API answered {dict(statuses)}")
    if any(s == "503" and not r for _, s, r in during):
        violations.append("a 503 during the database outage had no Retry-After")
    first_ok = next((t for t, s in after if s == "200"), None)
    recovered = None if first_ok is None else round(first_ok - back_at, 2)
    if recovered is None or recovered > RECOVERY_LIMIT_SECONDS:
        violations.append(
            f"the API did not serve within {RECOVERY_LIMIT_SECONDS:.0f} s of the database's return"
        )
    return {
        "down_seconds": round(back_at - down_from, 1),
        "answers_while_down": dict(statuses),
        "served_again_after_s": recovered,
        "violations": violations,
    }  # fmt: skip


def print_chaos_report(report: dict[str, Any]) -> None:
    outage = report["database_outage"]
    lines = [
        "",
        f"chaos run on {report['broker']}: {report['offered_rate']:.0f}/s offered for"
        f" {report['seconds']:.0f} s",
        f"  submissions {report['submissions']:,} ({report['transactions_accepted']:,}"
        f" transactions accepted, {report['resent']:,} resends)",
        f"  answers: {', '.join(f'{k}: {v:,}' for k, v in sorted(report['answers'].items()))}",
        f"  outcomes: {', '.join(f'{k}: {v:,}' for k, v in sorted(report['statuses'].items()))}",
        "  faults injected:",
        *(
            f"    {f['at_s']:6.1f} s  {f['what']} (done at {f['done_at_s']:.1f} s)"
            for f in report["faults"]
        ),
        f"  database down {outage.get('down_seconds')} s: API answered"
        f" {outage.get('answers_while_down')}; served again {outage.get('served_again_after_s')} s"
        " after it returned",
        f"  backlog drained {report['drain_seconds']} s after the load ended",
        f"  webhooks: {report['webhooks_received']:,} events received with a valid signature",
        f"  violations: {len(report['violations'])}",
        *(f"    - {violation}" for violation in report["violations"]),
    ]  # fmt: skip
    print("\n".join(lines), flush=True)
