"""The `tally bench` flags."""

from __future__ import annotations

import argparse
import os

PATTERNS = ("uniform", "hot", "holds", "splits")
# Scenarios beside the patterns: not part of `all`.
SLOW_CLIENTS = "slow-clients"
LEDGER_TIME = "ledger-time"
CHAOS = "chaos"
WALLET_TOKENS = "wallet-tokens"
# `--count` when not given: the wallet-tokens pattern sends four phases of it.
DEFAULT_COUNT = 20_000
WALLET_TOKENS_DEFAULT_COUNT = 2_000
# What `--pattern both` runs: the two patterns of the throughput targets.
BOTH = ("uniform", "hot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `tally bench` flags to its subcommand parser."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TALLY_BENCH_DATABASE_URL"),
        help="PostgreSQL server to create the fresh bench database on "
        "(default: TALLY_BENCH_DATABASE_URL, else an embedded PostgreSQL)",
    )
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument(
        "--broker-url",
        help="broker URL (default: TALLY_BENCH_REDIS_URL or TALLY_BENCH_AMQP_URL for --broker, "
        "else an embedded Redis; RabbitMQ needs a URL)",
    )
    parser.add_argument(
        "--pattern",
        choices=[*PATTERNS, "both", "all", SLOW_CLIENTS, LEDGER_TIME, CHAOS, WALLET_TOKENS],
        default="both",
        help="both: uniform and hot; holds: holds, then a capture of each; splits: spends in "
        "three legs (a seller, @fees, @tax); all: the four patterns; slow-clients: uniform "
        "alone, then beside --slow-connections trickling "
        "connections and --long-polls pending long-polls; ledger-time: one wallet's "
        "--history-entries seeded in SQL, then --as-of-reads balances as of a moment and "
        "statements as JSON and CSV over HTTP; chaos: --rate (default 300/s) for "
        "--chaos-seconds while workers, the relay, PostgreSQL, the broker and a webhook "
        "receiver fail, then checks that nothing accepted was lost or doubled; wallet-tokens: "
        "--count balance reads, then --count spends, each with the API key and with a wallet "
        "token (read, spend) of one wallet, on --concurrency (default 8) keep-alive "
        "connections: API CPU ms per request, requests/s and p50/p99 of key against token",
    )
    parser.add_argument(
        "--chaos-seconds", type=float, default=120.0, help="chaos: how long the load runs"
    )
    parser.add_argument(
        "--slow-connections", type=int, default=200, help="slow-clients: trickling connections"
    )
    parser.add_argument(
        "--long-polls", type=int, default=200, help="slow-clients: pending long-polls"
    )
    parser.add_argument(
        "--history-entries",
        type=int,
        default=1_000_000,
        help="ledger-time: top-ups of the one wallet, over the last 30 days",
    )
    parser.add_argument(
        "--as-of-reads", type=int, default=1000, help="ledger-time: balances as of a moment"
    )
    parser.add_argument(
        "--statement-entries",
        type=int,
        default=10_000,
        help="ledger-time: entries of each statement window (JSON and CSV)",
    )
    parser.add_argument(
        "--count",
        type=int,
        help=f"transactions per pattern (default {DEFAULT_COUNT:,}; holds: this many holds and "
        f"as many captures; wallet-tokens: requests per phase, default "
        f"{WALLET_TOKENS_DEFAULT_COUNT:,})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="requests in flight (default: 32, or 4 with --bulk; wallet-tokens: 8 connections)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered transactions per second (open loop); 0 sends as fast as the stack answers",
    )
    parser.add_argument("--bulk", action="store_true", help="submit via POST /transactions/batch")
    parser.add_argument("--bulk-size", type=int, default=1000, help="items per batch request")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets per pattern")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--api-workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--api-threads", type=int, default=8, help="Flask threads per API process")
    parser.add_argument(
        "--worker-concurrency", type=int, default=2, help="Celery pool size (prefork, threads)"
    )
    parser.add_argument("--worker-pool", choices=["prefork", "threads", "solo"], default="solo")
    parser.add_argument(
        "--worker-instances",
        type=int,
        default=1,
        help="separate `tally worker` processes (scale-out; --api-workers sizes the API)",
    )
    parser.add_argument(
        "--raw-count", type=int, help="raw SQL transfers per pattern (default: --count)"
    )
    parser.add_argument("--raw-clients", type=int, default=8, help="raw SQL connections")
    parser.add_argument("--skip-raw", action="store_true", help="do not run the raw SQL write")
    parser.add_argument(
        "--latency-count",
        type=int,
        default=20,
        help="lone top-ups, one after another, timed from 202 to applied and from applied "
        "to a local webhook receiver's answer (0 skips this measurement)",
    )
    parser.add_argument("--json", dest="json_path", help="write the results as JSON here")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database")
    parser.add_argument("--seed", type=int, default=1234)
