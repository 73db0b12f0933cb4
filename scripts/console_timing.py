"""How long the operator console takes to render its pages on a ledger of many transactions.

Seeds a database of its own through the real intake and posting engine: two tenants (the
measured one holds nine tenths of the rows), about 2,000 users with one busy one, mostly
top-ups and spends, some transfers, bonuses and holds, spends beyond the balance (rejected),
about 1% failed the way a worker fails one, a few hundred left queued, and one webhook
endpoint per tenant created before posting, so every event has its delivery row (nothing
sends them: no dispatcher or relay runs). Seeding takes a minute or two, so the rows'
timestamps are then moved back to span the last 20 hours, each keeping its accept-to-complete
latency: the time filters and the overview's hour and day windows see a spread, not a burst.

Then it signs in with an admin key through the login form, in process (Flask's test
client: no network), and renders each page 2 times to warm up and 20 times measured. It
prints the load average and a Markdown table: median and p95 wall milliseconds, and the
median CPU milliseconds of this process, per page. Wall minus CPU is mostly time spent
waiting for PostgreSQL.

    .venv/bin/python scripts/console_timing.py                  # drop, seed 100,000, measure
    .venv/bin/python scripts/console_timing.py --reuse          # measure the seeded database
    .venv/bin/python scripts/console_timing.py --transactions 5000

The database named by --database-url is dropped and created again unless --reuse finds it
seeded. With --reuse the rows keep aging: the overview's windows hold fewer of them as
hours pass, so reseed to compare runs made far apart.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from config.database_urls import sqlalchemy_url
from config.settings import Settings
from ledger.db import make_engine, unit_of_work
from ledger.intake import Submission, submit_transactions
from ledger.posting import _record_failure, post_transactions
from ledger.tenants import create_api_key, create_asset, create_tenant
from ledger.transaction_request import TransactionRequest
from ledger.webhooks.endpoints import create_endpoint
from tally.migrate import upgrade
from tally.stack import with_database

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/tally_console_timing"
BROKER_URL = "redis://127.0.0.1:6379/0"
MEASURED_TENANT = "console-timing"
NEIGHBOUR_TENANT = "console-timing-neighbour"

USERS = 2_000
# One user in twenty transactions is the same one: the console's "busy wallet".
BUSY_USER = "user-0007"
BUSY_SHARE = 0.05
# Intake batches of a thousand, posted in batches of five hundred, as a worker would.
SUBMIT_BATCH = 1_000
POST_BATCH = 500
FAILED_SHARE = 0.01
# 300 of 100,000 left queued.
QUEUED_PER_THOUSAND = 3
SPREAD = timedelta(hours=20)
# Moving every row's timestamps is one statement per table, longer than the ledger's 30 s
# bound once the tables hold millions of rows.
SEED_STATEMENT_TIMEOUT_MS = 600_000

WARMUPS = 2
RUNS = 20
SLOW_MS = 100.0

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
NEXT_PAGE = re.compile(r'id="next-page" href="([^"]*)"')


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    user_prefix: str


# Seeding.


def recreate_database(url: str) -> None:
    """Drop the database of `url` (closing its connections) and create it empty."""
    name = make_url(url).database
    server = create_engine(
        sqlalchemy_url(with_database(url, "postgres")), isolation_level="AUTOCOMMIT"
    )
    try:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        server.dispose()


def database_exists(url: str) -> bool:
    name = make_url(url).database
    server = create_engine(sqlalchemy_url(with_database(url, "postgres")))
    try:
        with server.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
    finally:
        server.dispose()
    return found is not None


def new_tenant(engine: Engine, name: str, user_prefix: str) -> Tenant:
    """A tenant with a EUR wallet asset and a webhook endpoint subscribed to every event."""
    with unit_of_work(engine) as conn:
        tenant_id = create_tenant(conn, name)
        create_asset(conn, tenant_id, "EUR", "Euro", 2)
        create_endpoint(conn, tenant_id, url="http://127.0.0.1:9/h", allow_private=True)
    return Tenant(tenant_id, name, user_prefix)


def submissions(rng: random.Random, tenant: Tenant, count: int) -> Iterator[TransactionRequest]:
    """`count` submissions: mostly top-ups and spends, some beyond the wallet's balance."""
    for number in range(count):
        user = _user(rng, tenant)
        reference = f"{tenant.user_prefix}ref-{number:07d}"
        roll = rng.random()
        if roll < 0.42:
            yield _request(
                "topup", reference, user, rng.randint(500, 20_000), payment_method="card"
            )
        elif roll < 0.78:
            yield _request("spend", reference, user, rng.randint(100, 8_000), item_id="sku-1")
        elif roll < 0.82:
            # Far beyond any balance: rejected, insufficient funds.
            yield _request("spend", reference, user, 50_000_000, item_id="sku-2")
        elif roll < 0.93:
            receiver = _user(rng, tenant)
            while receiver == user:
                receiver = _user(rng, tenant)
            yield _request(
                "transfer", reference, user, rng.randint(100, 3_000), to_user_id=receiver
            )
        elif roll < 0.98:
            yield _request("bonus", reference, user, rng.randint(100, 1_000), bonus_type="promo")
        else:
            yield _request("hold", reference, user, rng.randint(100, 2_000))


def _user(rng: random.Random, tenant: Tenant) -> str:
    if tenant.name == MEASURED_TENANT and rng.random() < BUSY_SHARE:
        return BUSY_USER
    return f"{tenant.user_prefix}user-{rng.randrange(USERS):04d}"


def _request(
    kind: str, reference: str, user: str, amount: int, **fields: Any
) -> TransactionRequest:
    return TransactionRequest(
        type=kind, reference_id=reference, user_id=user, asset_code="EUR", amount=amount, **fields
    )


def record(engine: Engine, tenant: Tenant, batch: list[TransactionRequest]) -> list[uuid.UUID]:
    """Record a batch through intake; the new transactions' ids, in order."""
    with unit_of_work(engine) as conn:
        results = submit_transactions(conn, tenant.id, batch, admin=True)
    ids = []
    for result in results:
        if not isinstance(result, Submission) or result.replayed:
            raise SystemExit(f"seeding: a submission was not recorded as new: {result!r}")
        ids.append(result.id)
    return ids


def apply(engine: Engine, rng: random.Random, ids: list[uuid.UUID], keep_queued: int) -> None:
    """Fail about 1% of `ids` on their last attempt, leave the last `keep_queued` queued, and
    post the rest through the engine."""
    to_post = ids[: len(ids) - keep_queued]
    failing = set(rng.sample(to_post, round(len(to_post) * FAILED_SHARE)))
    for transaction_id in failing:
        # The worker's own path for a fault on a transaction's last allowed attempt.
        _record_failure(engine, transaction_id, RuntimeError("x"), max_attempts=1)
    to_post = [i for i in to_post if i not in failing]
    for start in range(0, len(to_post), POST_BATCH):
        post_transactions(engine, to_post[start : start + POST_BATCH])


# The rows of one transaction move back by the same amount; a row's age grows with its
# distance from the newest `seq`, so acceptance order and latency are kept.
SPREAD_TIMESTAMPS = [
    """
    CREATE TEMP TABLE shift AS
    SELECT t.id, make_interval(secs => :spread * (b.hi - t.seq) / greatest(b.hi - b.lo, 1)) AS back
    FROM transactions t, (SELECT min(seq) AS lo, max(seq) AS hi FROM transactions) b
    """,
    "ALTER TABLE shift ADD PRIMARY KEY (id)",
    """
    UPDATE transactions t
    SET created_at = t.created_at - s.back, updated_at = t.updated_at - s.back,
        completed_at = t.completed_at - s.back, next_attempt_at = t.next_attempt_at - s.back
    FROM shift s WHERE s.id = t.id
    """,
    """
    UPDATE events e SET created_at = e.created_at - s.back
    FROM shift s WHERE s.id = e.transaction_id
    """,
    """
    UPDATE webhook_deliveries d
    SET created_at = d.created_at - s.back, updated_at = d.updated_at - s.back,
        next_attempt_at = d.next_attempt_at - s.back
    FROM events e JOIN shift s ON s.id = e.transaction_id
    WHERE e.id = d.event_id
    """,
]


def spread_timestamps(engine: Engine) -> None:
    with unit_of_work(engine) as conn:
        for statement in SPREAD_TIMESTAMPS:
            conn.execute(text(statement), {"spread": SPREAD.total_seconds()})


def vacuum_analyze(url: str) -> None:
    """Fresh statistics and visibility maps, as autovacuum would leave them."""
    engine = create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def seed(url: str, transactions: int) -> None:
    """Create, migrate and fill the database; the measured tenant gets nine tenths."""
    recreate_database(url)
    upgrade(url)
    rng = random.Random(20240601)
    engine = make_engine(url, statement_timeout_ms=SEED_STATEMENT_TIMEOUT_MS)
    try:
        measured = new_tenant(engine, MEASURED_TENANT, "")
        neighbour = new_tenant(engine, NEIGHBOUR_TENANT, "n-")
        plan = _plan(transactions)
        streams = {
            measured.id: submissions(rng, measured, sum(n for t, n in plan if t == "measured")),
            neighbour.id: submissions(rng, neighbour, sum(n for t, n in plan if t == "neighbour")),
        }
        keep_queued = transactions * QUEUED_PER_THOUSAND // 1000
        done = 0
        for index, (which, size) in enumerate(plan):
            tenant = measured if which == "measured" else neighbour
            batch = [next(streams[tenant.id]) for _ in range(size)]
            ids = record(engine, tenant, batch)
            apply(engine, rng, ids, keep_queued if index == len(plan) - 1 else 0)
            done += size
            print(f"  seeded {done:,} of {transactions:,}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        spread_timestamps(engine)
    finally:
        engine.dispose()
    vacuum_analyze(url)


def _plan(transactions: int) -> list[tuple[str, int]]:
    """(tenant, batch size) in submission order: one batch in ten is the neighbour's, the
    last one the measured tenant's (it keeps the queued rows)."""
    sizes = [
        min(SUBMIT_BATCH, transactions - start) for start in range(0, transactions, SUBMIT_BATCH)
    ]
    plan = [("neighbour" if i % 10 == 4 else "measured", n) for i, n in enumerate(sizes)]
    plan[-1] = ("measured", plan[-1][1])
    return plan


# What the pages are measured on.


@dataclass(frozen=True)
class Landmarks:
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    busy_user: str
    reference_id: str
    window_from: datetime
    window_to: datetime
    transfer_id: uuid.UUID


LANDMARKS = {
    "tenant": "SELECT id FROM tenants WHERE name = :name",
    "endpoint": "SELECT id FROM webhook_endpoints WHERE tenant_id = :t ORDER BY created_at LIMIT 1",
    "busy_user": """
        SELECT user_id FROM transactions WHERE tenant_id = :t
        GROUP BY user_id ORDER BY count(*) DESC LIMIT 1
    """,
    "middle": """
        SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY created_at)
        FROM transactions WHERE tenant_id = :t
    """,
    "reference": """
        SELECT reference_id FROM transactions WHERE tenant_id = :t AND created_at >= :at
        ORDER BY created_at LIMIT 1
    """,
    "transfer": """
        SELECT t.id FROM transactions t
        JOIN events e ON e.transaction_id = t.id
        JOIN webhook_deliveries d ON d.event_id = e.id
        WHERE t.tenant_id = :t AND t.type = 'transfer' AND t.status = 'applied'
          AND t.created_at >= :at
        ORDER BY t.created_at LIMIT 1
    """,
}


def find_landmarks(conn: Connection) -> Landmarks | None:
    """The busy user, the middle of the data, an applied transfer with deliveries; None if
    the database holds no seeded tenant."""

    def one(landmark: str, **params: object) -> object:
        return conn.execute(text(LANDMARKS[landmark]), params).scalar()

    tenant_id = one("tenant", name=MEASURED_TENANT)
    if tenant_id is None:
        return None
    middle = one("middle", t=tenant_id)
    assert isinstance(middle, datetime)
    return Landmarks(
        tenant_id=uuid.UUID(str(tenant_id)),
        endpoint_id=uuid.UUID(str(one("endpoint", t=tenant_id))),
        busy_user=str(one("busy_user", t=tenant_id)),
        reference_id=str(one("reference", t=tenant_id, at=middle)),
        window_from=middle - timedelta(minutes=5),
        window_to=middle + timedelta(minutes=5),
        transfer_id=uuid.UUID(str(one("transfer", t=tenant_id, at=middle))),
    )


def seeded_landmarks(url: str) -> Landmarks | None:
    if not database_exists(url):
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return find_landmarks(conn)
    except Exception:
        # Not a Tally database, or one left half-migrated: not seeded.
        return None
    finally:
        engine.dispose()


def admin_key(url: str, tenant_id: uuid.UUID) -> str:
    """A new admin key for the run (keys are stored only as hashes)."""
    engine = make_engine(url)
    try:
        with unit_of_work(engine) as conn:
            return create_api_key(conn, tenant_id, scope="admin")
    finally:
        engine.dispose()


# Measuring.


@dataclass(frozen=True)
class Timing:
    page: str
    median_ms: float
    p95_ms: float
    cpu_ms: float


def sign_in(client: FlaskClient, api_key: str) -> None:
    form = client.get("/console/login").get_data(as_text=True)
    token = CSRF_FIELD.search(form)
    assert token, "the login page has no CSRF token"
    answer = client.post("/console/login", data={"api_key": api_key, "csrf_token": token[1]})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in answered {answer.status_code}")


def render(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    if page.status_code != 200:
        raise SystemExit(f"{path} answered {page.status_code}: {page.get_data(as_text=True)[:500]}")
    return page.get_data(as_text=True)


def time_page(client: FlaskClient, page: str, path: str) -> Timing:
    for _ in range(WARMUPS):
        render(client, path)
    walls, cpus = [], []
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        render(client, path)
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return Timing(page, statistics.median(walls), _p95(walls), statistics.median(cpus))


def _p95(samples: list[float]) -> float:
    """Nearest rank: of 20 samples, the 19th smallest."""
    return sorted(samples)[math.ceil(0.95 * len(samples)) - 1]


def pages(client: FlaskClient, marks: Landmarks) -> list[tuple[str, str]]:
    """(name, path) of every page measured; page 2 follows page 1's "Older" link."""
    first = render(client, "/console/transactions")
    older = NEXT_PAGE.search(first)
    assert older, "the first page of transactions has no next-page link"
    window = urlencode(
        {
            "from": f"{marks.window_from:%Y-%m-%dT%H:%M:%S%z}",
            "to": f"{marks.window_to:%Y-%m-%dT%H:%M:%S%z}",
        }
    )
    return [
        ("overview", "/console/"),
        ("transactions, page 1", "/console/transactions"),
        ("transactions, page 2", html.unescape(older[1])),
        ("transactions, status=failed", "/console/transactions?status=failed"),
        (
            "transactions, busy user",
            f"/console/transactions?{urlencode({'user_id': marks.busy_user})}",
        ),
        (
            "transactions, q=reference",
            f"/console/transactions?{urlencode({'q': marks.reference_id})}",
        ),
        ("transactions, 10-minute window", f"/console/transactions?{window}"),
        ("transfer with deliveries", f"/console/transactions/{marks.transfer_id}"),
        ("wallet of busy user", f"/console/wallets/{marks.busy_user}"),
        ("webhooks", "/console/webhooks"),
        ("webhook endpoint", f"/console/webhooks/{marks.endpoint_id}"),
        ("keys", "/console/keys"),
        ("audit", "/console/audit"),
    ]


def table(timings: list[Timing]) -> str:
    lines = [
        "| page | median ms | p95 ms | CPU ms (median) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {t.page}{' **(slow)**' if t.median_ms > SLOW_MS else ''}"
        f" | {t.median_ms:.1f} | {t.p95_ms:.1f} | {t.cpu_ms:.1f} |"
        for t in timings
    ]
    return "\n".join(lines)


def count_transactions(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM transactions")).scalar_one())
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument(
        "--reuse", action="store_true", help="skip seeding when the database is already seeded"
    )
    args = parser.parse_args()
    url = args.database_url

    marks = seeded_landmarks(url) if args.reuse else None
    if marks is None:
        print(f"Seeding {args.transactions:,} transactions into {url} ...", file=sys.stderr)
        started = time.perf_counter()
        seed(url, args.transactions)
        print(f"Seeding took {time.perf_counter() - started:.0f} s.")
        marks = seeded_landmarks(url)
        assert marks is not None
    else:
        print("Reusing the seeded database.")

    app = create_app(Settings(database_url=url, broker_url=BROKER_URL, queue="console-timing"))
    client = app.test_client()
    sign_in(client, admin_key(url, marks.tenant_id))
    measured = pages(client, marks)
    load = os.getloadavg()
    print(
        f"\n{count_transactions(url):,} transactions; {RUNS} requests per page after {WARMUPS}"
        f" warm-ups; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        f" ({os.cpu_count()} CPUs).\n"
    )
    print(table([time_page(client, name, path) for name, path in measured]))
    app.extensions["tally"].engine.dispose()


if __name__ == "__main__":
    main()
