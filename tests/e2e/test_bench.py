"""`tally bench` runs end to end at a tiny size: its report has the promised shape and the
ledger it leaves behind holds its invariants. Its speed and latencies are read by people,
not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN_KEYS = {
    "pattern",
    "mode",
    "broker",
    "count",
    "intake_rate",
    "applied_rate",
    "accept_latency_ms",
    "apply_latency_ms",
    "statuses",
    "errors",
    "raw_sql",
    "applied_to_raw_ratio",
    "memory_peak_mb",
    "cpu_ms_per_tx",
}
SMALL = [
    "--count", "200", "--wallets", "20", "--raw-count", "200", "--raw-clients", "2",
    "--clients", "1", "--concurrency", "4", "--api-workers", "1", "--api-threads", "4",
    "--worker-concurrency", "1", "--latency-count", "5",
]  # fmt: skip


def bench(database_server_url: str, broker_url: str, out: Path, *extra: str) -> dict:
    broker = "amqp" if broker_url.startswith("amqp") else "redis"
    command = [
        sys.executable, "-m", "tally.cli", "bench",
        "--database-url", database_server_url, "--broker", broker, "--broker-url", broker_url,
        "--json", str(out), *SMALL, *extra,
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "ledger invariants hold" in finished.stdout
    report: dict = json.loads(out.read_text())
    return report


def check_percentiles(latencies: dict) -> None:
    assert set(latencies) == {"p50", "p95", "p99", "max"}
    assert 0 <= latencies["p50"] <= latencies["p95"] <= latencies["p99"] <= latencies["max"]


def check_run(run: dict, pattern: str, mode: str) -> None:
    assert set(run) >= RUN_KEYS
    assert (run["pattern"], run["mode"], run["count"]) == (pattern, mode, 200)
    assert run["statuses"] == {"applied": 200}
    assert run["errors"]["total"] == 0
    assert run["intake_rate"] > 0 and run["applied_rate"] > 0
    check_percentiles(run["accept_latency_ms"])
    check_percentiles(run["apply_latency_ms"])
    assert run["memory_peak_mb"]["api_worker"] > 0
    assert run["memory_peak_mb"]["celery_worker"] > 0


@pytest.mark.slow
def test_bench_reports_both_patterns_lone_latencies_and_a_consistent_ledger(
    database_server_url: str, broker_url: str, tmp_path: Path
) -> None:
    report = bench(database_server_url, broker_url, tmp_path / "bench.json")

    assert report["ok"] is True
    assert report["invariants"]["ok"] is True
    assert [run["pattern"] for run in report["runs"]] == ["uniform", "hot"]
    for run in report["runs"]:
        check_run(run, run["pattern"], "single")
        assert run["raw_sql"]["count"] == 200 and run["raw_sql"]["rate"] > 0
        assert run["applied_to_raw_ratio"] > 0
    assert report["environment"]["cpus"] >= 1
    latency = report["latency"]
    assert (latency["count"], latency["errors"]) == (5, 0), latency["error_samples"]
    check_percentiles(latency["accept_to_applied_ms"])
    check_percentiles(latency["created_to_completed_ms"])
    check_percentiles(latency["applied_to_webhook_ms"])


@pytest.mark.slow
def test_bench_drives_the_bulk_endpoint(
    database_server_url: str, broker_url: str, tmp_path: Path
) -> None:
    report = bench(
        database_server_url,
        broker_url,
        tmp_path / "bench.json",
        *("--bulk", "--bulk-size", "50", "--pattern", "hot", "--skip-raw", "--rate", "400"),
        *("--latency-count", "0"),
    )

    assert report["ok"] is True
    (run,) = report["runs"]
    check_run(run, "hot", "bulk")
    assert run["raw_sql"] is None
    assert run["offered_rate"] == 400
    assert "latency" not in report


@pytest.mark.slow
def test_bench_compares_the_normal_load_with_and_without_slow_clients(
    database_server_url: str, broker_url: str, tmp_path: Path
) -> None:
    report = bench(
        database_server_url,
        broker_url,
        tmp_path / "bench.json",
        *("--pattern", "slow-clients", "--slow-connections", "5", "--long-polls", "5"),
        *("--skip-raw", "--latency-count", "0"),
    )

    assert report["ok"] is True
    assert [run["pattern"] for run in report["runs"]] == ["uniform", "uniform+slow"]
    for run in report["runs"]:
        check_run(run, run["pattern"], "single")
    slow = report["slow_clients"]
    assert (slow["slow_connections"], slow["long_polls"]) == (5, 5)
    assert slow["throughput_kept"] > 0
    for setting in ("load_alone", "load_and_slow_clients", "slow_clients_alone"):
        probed = slow["health"][setting]
        assert probed["probes"] > 0 and probed["failures"] == 0, (setting, probed)
        check_percentiles(probed["latency_ms"])
    pressure = slow["pressure"]
    # Every trickling connection was cut off by the header timeout at least once, and the
    # long-polls stayed parked: none was answered before its wait ended.
    assert pressure["cut_off"] >= 5
    assert pressure["polls_answered"] == pressure["polls_parked"]
    assert pressure["polls_parked"] + pressure["pending_at_end"] >= 5


@pytest.mark.slow
def test_bench_compares_a_wallet_token_with_an_api_key(
    database_server_url: str, broker_url: str, tmp_path: Path
) -> None:
    report = bench(
        database_server_url,
        broker_url,
        tmp_path / "bench.json",
        *("--pattern", "wallet-tokens", "--latency-count", "0"),
    )

    assert report["ok"] is True
    assert report["runs"] == []
    tokens = report["wallet_tokens"]
    assert (tokens["count"], tokens["errors"]) == (200, 0), tokens["error_samples"]
    for kind, status in (("reads", "200"), ("spends", "202")):
        for label in ("key", "token"):
            phase = tokens[kind][label]
            assert phase["statuses"] == {status: 200}, (kind, label)
            assert phase["requests_per_second"] > 0
            assert 0 < phase["latency_ms"]["p50"] <= phase["latency_ms"]["p99"]
            assert phase["cpu_ms_per_request"]["api"] > 0
            if kind == "spends":
                assert phase["applied"] == 200
        assert tokens[kind]["token_to_key_api_cpu"] > 0
    assert tokens["raw_sql"]["count"] == 200 and tokens["raw_sql"]["rate"] > 0
