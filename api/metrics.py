"""GET /metrics in the Prometheus text format.

The API and the workers are separate processes (often on separate hosts); what they share
is PostgreSQL. So the ledger-wide numbers are read from the database at scrape time:
transactions by type and outcome, the apply-latency and batch-size distributions, the
age of the oldest queued transaction, relay re-publishes and webhook deliveries by
status. Only what this process itself measures (HTTP request latency, which includes
the accept latency of submissions) lives in memory, per API process.

The numbers span every tenant, so a scrape needs TALLY_METRICS_TOKEN (`tally dev` makes
one up; without one set, /metrics refuses every scrape). They are read as the
`tally_monitor` role, which may count transactions and deliveries and read nothing else,
and reused for TALLY_METRICS_CACHE_SECONDS: however often Prometheus (or anyone holding
the token) scrapes, the ledger is scanned at most once per period per API process.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.problems import ApiProblem
from api.waiter import TransactionWaiter
from config.settings import Settings
from ledger import stats
from ledger.db import make_engine
from ledger.vocabulary import TransactionStatus

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# A scrape must never hold a connection for long, whatever the size of the ledger.
SCRAPE_TIMEOUT_MS = 5000


class LedgerCollector(Collector):
    """Ledger-wide metrics, computed from PostgreSQL at most once per `cache_seconds`."""

    def __init__(self, engine: Engine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at = -math.inf

    def describe(self) -> list[Metric]:
        # Nothing up front: describing would run the queries when the collector registers.
        return []

    def collect(self) -> Iterator[Metric]:
        # One scrape reads at a time; the others meanwhile get what it read.
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                self._cached = self._read()
                self._read_at = time.monotonic()
            yield from self._cached

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("tally_database_up", "Whether the ledger database answered.")
        try:
            with self.engine.connect() as conn:
                stats.limit_statement_time(conn, SCRAPE_TIMEOUT_MS)
                metrics = list(self._transactions(stats.transaction_stats(conn)))
                metrics += self._batches(stats.batch_sizes(conn))
                metrics += self._oldest_queued(stats.oldest_queued_age(conn))
                metrics += self._webhooks(stats.webhook_delivery_counts(conn))
        except SQLAlchemyError as error:
            log.warning("metrics scrape could not read the ledger: %s", error)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _transactions(self, numbers: stats.TransactionStats) -> Iterator[Metric]:
        accepted = CounterMetricFamily(
            "tally_transactions_accepted", "Transactions accepted (recorded).", labels=["type"]
        )
        applied = CounterMetricFamily(
            "tally_transactions_applied", "Transactions applied to the ledger.", labels=["type"]
        )
        rejected = CounterMetricFamily(
            "tally_transactions_rejected",
            "Transactions rejected by a business rule, by result code.",
            labels=["type", "code"],
        )
        failed = CounterMetricFamily(
            "tally_transactions_failed",
            "Transactions that failed after their retries.",
            labels=["type"],
        )
        queued = GaugeMetricFamily(
            "tally_transactions_queued", "Transactions waiting to be applied.", labels=["type"]
        )
        republished = CounterMetricFamily(
            "tally_relay_republished", "Transactions re-published by the relay."
        )
        totals: dict[str, dict[str, float]] = {}
        for outcome in numbers.outcomes:
            per_type = totals.setdefault(outcome.type, {})
            per_type[outcome.status] = per_type.get(outcome.status, 0) + outcome.count
            if outcome.status == TransactionStatus.REJECTED:
                rejected.add_metric([outcome.type, outcome.code], outcome.count)
        for kind, counts in sorted(totals.items()):
            accepted.add_metric([kind], sum(counts.values()))
            applied.add_metric([kind], counts.get(TransactionStatus.APPLIED, 0))
            failed.add_metric([kind], counts.get(TransactionStatus.FAILED, 0))
            queued.add_metric([kind], counts.get(TransactionStatus.QUEUED, 0))
        republished.add_metric([], numbers.republished)
        latency = HistogramMetricFamily(
            "tally_apply_latency_seconds",
            "From acceptance to the outcome (applied or rejected).",
        )
        latency.add_metric(
            [],
            [
                *(
                    (str(b), n)
                    for b, n in zip(stats.APPLY_BUCKETS, numbers.latency_buckets, strict=True)
                ),
                ("+Inf", numbers.decided),
            ],
            numbers.latency_sum,
        )
        yield from (accepted, applied, rejected, failed, queued, republished, latency)

    def _batches(self, sizes: list[tuple[int, int]]) -> list[Metric]:
        buckets = [
            (str(bound), sum(n for size, n in sizes if size <= bound)) for bound in BATCH_BUCKETS
        ]
        batches = HistogramMetricFamily(
            "tally_apply_batch_size", "Transactions decided per posting batch (one commit)."
        )
        batches.add_metric(
            [],
            [*buckets, ("+Inf", sum(n for _, n in sizes))],
            sum(size * n for size, n in sizes),
        )
        return [batches]

    def _oldest_queued(self, age: float) -> list[Metric]:
        gauge = GaugeMetricFamily(
            "tally_oldest_queued_age_seconds",
            "Age of the oldest transaction still queued (0 when none is).",
        )
        gauge.add_metric([], age)
        return [gauge]

    def _webhooks(self, counts: list[stats.DeliveryCount] | None) -> list[Metric]:
        if counts is None:
            return []
        deliveries = GaugeMetricFamily(
            "tally_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
        )
        attempts = CounterMetricFamily(
            "tally_webhook_delivery_attempts",
            "Delivery attempts made, by the delivery's status.",
            labels=["status"],
        )
        for count in counts:
            deliveries.add_metric([count.status], count.count)
            attempts.add_metric([count.status], count.attempts)
        return [deliveries, attempts]


def monitor_engine(monitor_database_url: str) -> Engine:
    """A small engine on the `tally_monitor` login (Settings.require_monitor_database_url)."""
    return make_engine(monitor_database_url, pool_size=1, max_overflow=1)


def _token_matches(token: str) -> bool:
    # Headers arrive as latin-1 text: compare bytes, so that any header (non-ASCII too)
    # is simply a wrong token.
    sent = request.headers.get("Authorization", "").encode("latin-1", "replace")
    return hmac.compare_digest(sent, f"Bearer {token}".encode())


def init_app(app: Flask, settings: Settings, waiter: TransactionWaiter | None = None) -> None:
    """Time every request and serve GET /metrics to holders of TALLY_METRICS_TOKEN."""
    token = settings.metrics_token
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(
        LedgerCollector(
            monitor_engine(settings.require_monitor_database_url()),
            settings.metrics_cache_seconds,
        )
    )
    requests = Histogram(
        "tally_http_request_duration_seconds",
        "HTTP requests served by this API process; for submissions, the accept latency.",
        ["endpoint", "method", "status"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    if waiter is not None:
        parked = Gauge(
            "tally_long_polls_parked",
            "Long-polls (?wait) this API process holds now, against its bound.",
            registry=registry,
        )
        parked.set_function(waiter.parked)

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started: Any = g.get("metrics_started")
        if started is not None:
            requests.labels(
                request.endpoint or "unmatched", request.method, str(response.status_code)
            ).observe(time.perf_counter() - started)
        return response

    def metrics() -> Response:
        """Prometheus metrics: ledger-wide from the database, requests from this process."""
        if token is None:
            raise ApiProblem(
                403,
                "metrics_token_not_configured",
                "Metrics span every tenant: set TALLY_METRICS_TOKEN to serve them.",
            )
        if not _token_matches(token):
            raise ApiProblem(
                401,
                "invalid_metrics_token",
                "Send Authorization: Bearer <TALLY_METRICS_TOKEN>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics, methods=["GET"])
