"""Percentiles, the per-run result and what the bench prints."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PCTS = ("p50", "p95", "p99")


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of durations given in seconds (nearest rank)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, math.ceil(q * len(ordered)) - 1)
        return round(ordered[index] * 1000, 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


@dataclass
class RunResult:
    """One measured pattern: rates, latencies, errors, memory and CPU."""

    pattern: str
    mode: str
    broker: str
    count: int
    concurrency: int
    offered_rate: float | None
    intake_rate: float = 0.0
    applied_rate: float = 0.0
    accept_latency_ms: dict[str, float | None] = field(default_factory=dict)
    apply_latency_ms: dict[str, float | None] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    retries: int = 0
    raw_sql: dict[str, Any] | None = None
    applied_to_raw_ratio: float | None = None
    memory_peak_mb: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per measured transaction, by role, over submission and application.
    cpu_ms_per_tx: dict[str, float] = field(default_factory=dict)


def trio(values: dict[str, float | None]) -> str:
    """p50/p95/p99 as whole milliseconds, `-` for a missing one."""
    return "/".join("-" if values.get(k) is None else f"{values[k]:.0f}" for k in PCTS)


def format_table(runs: Sequence[RunResult]) -> str:
    """The results as a fixed-width table."""
    header = (
        "pattern", "mode", "broker", "count", "intake/s", "applied/s", "raw SQL/s", "ratio",
        "accept p50/p95/p99 ms", "accept->applied p50/p95/p99 ms", "errors",
        "API RSS MB", "worker RSS MB",
    )  # fmt: skip
    rows = [header]
    for run in runs:
        raw_rate = run.raw_sql["rate"] if run.raw_sql else None
        rows.append(
            (
                run.pattern,
                run.mode,
                run.broker,
                str(run.count),
                f"{run.intake_rate:.0f}",
                f"{run.applied_rate:.0f}",
                "-" if raw_rate is None else f"{raw_rate:.0f}",
                "-" if run.applied_to_raw_ratio is None else f"{run.applied_to_raw_ratio:.2f}",
                trio(run.accept_latency_ms),
                trio(run.apply_latency_ms),
                str(run.errors.get("total", 0)),
                f"{run.memory_peak_mb.get('api_worker', 0):.0f}",
                f"{run.memory_peak_mb.get('celery_worker', 0):.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_latency(latency: dict[str, Any]) -> str:
    """The lone-transaction latencies as a few aligned lines."""
    rows = [
        ("202 -> applied, seen by the client", latency["accept_to_applied_ms"]),
        ("created_at -> completed_at, in the database", latency["created_to_completed_ms"]),
        ("applied -> webhook receiver's 200", latency["applied_to_webhook_ms"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"latency of a lone transaction ({latency['count']} sequential top-ups), "
        "p50/p95/p99/max ms:"
    ]
    for label, values in rows:
        cells = "/".join(
            "-" if values.get(k) is None else f"{values[k]:.1f}" for k in (*PCTS, "max")
        )
        lines.append(f"  {label.ljust(width)}  {cells}")
    return "\n".join(lines)


def format_slow_clients(result: dict[str, Any]) -> str:
    """The slow-clients scenario's comparison as a few lines."""
    pressure = result["pressure"]

    def health(setting: str) -> str:
        probed = result["health"][setting]
        latency = probed["latency_ms"]
        return (
            f"{latency['p50']}/{latency['p99']}/{latency['max']} "
            f"({probed['probes']} probes, {probed['failures']} failed)"
        )

    return "\n".join(
        [
            f"slow clients: {result['slow_connections']} trickling connections, "
            f"{result['long_polls']} long-polls",
            f"  applied/s plain {result['plain_applied_rate']:.0f}, with slow clients "
            f"{result['loaded_applied_rate']:.0f} (kept {result['throughput_kept']:.0%})",
            f"  accept p50/p95/p99 ms plain {trio(result['plain_accept_latency_ms'])}, "
            f"with slow clients {trio(result['loaded_accept_latency_ms'])}",
            "  /health p50/p99/max ms:",
            f"    beside the normal load alone          {health('load_alone')}",
            f"    beside the normal load + slow clients {health('load_and_slow_clients')}",
            f"    beside the slow clients alone         {health('slow_clients_alone')}",
            f"  trickling connections cut off and reopened {pressure['cut_off']}; long-polls "
            f"answered {pressure['polls_answered']} (parked >= 1 s: {pressure['polls_parked']}), "
            f"pending at the end {pressure['pending_at_end']}; pressure CPU "
            f"{pressure['cpu']:.1f} s",
        ]
    )


def format_ledger_time(result: dict[str, Any]) -> str:
    """The ledger-time scenario's figures and targets as a few lines."""

    def verdict(name: str) -> str:
        met = result["targets"][name]
        return "not measured" if met is None else "met" if met else "missed"

    def ms(values: dict[str, float | None]) -> str:
        return "/".join("-" if values.get(k) is None else f"{values[k]:.1f}" for k in PCTS)

    as_of = result["as_of"]
    lines = [
        f"ledger time: one wallet of {result['history_entries']} entries "
        f"({result['backdated']} backdated, {result['checkpoints']} checkpoints), seeded in "
        f"{result['seed_seconds']} s",
        f"  balance as of a moment, p50/p95/p99 ms: HTTP {ms(as_of['http_ms'])} "
        f"({as_of['reads']} reads), in-process {ms(as_of['in_process_ms'])}; "
        f"p99 <= 20 ms {verdict('as_of_p99_within_20_ms')}",
    ]
    statements = result["statements"]
    if statements:
        lines.append(
            f"  statement of {statements['entries']} entries as JSON (pages of "
            f"{statements['page_size']}, the most one holds), whole statement p50/p95/p99 ms: "
            f"{ms(statements['json_ms'])}; p99 <= 250 ms "
            f"{verdict('statement_json_p99_within_250_ms')}"
        )
        for label, key in (("window", "csv_window"), ("whole history", "csv_whole")):
            csv = statements[key]
            rss = csv["api_rss"]
            lines.append(
                f"  CSV, {label}: {csv['entries']} entries, {csv['bytes'] / 2**20:.1f} MB in "
                f"{csv['seconds']} s (first byte {csv['first_byte_ms']} ms); API worker RSS "
                f"{rss['before_mb']} MB before, {rss['peak_mb']} MB peak (grew {rss['growth_mb']})"
            )
        lines.append(f"  CSV in constant memory: {verdict('csv_in_constant_memory')}")
    return "\n".join(lines)


def format_wallet_tokens(result: dict[str, Any]) -> str:
    """The wallet-tokens pattern: each phase's CPU per request, rate and latency."""

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = ("phase", "API CPU ms/req", "PostgreSQL ms/req", "worker ms/req", "req/s",
              "p50/p99 ms", "applied")  # fmt: skip
    rows = [header]
    for kind in ("reads", "spends"):
        for label, name in (("key", "API key"), ("token", "wallet token")):
            phase = result[kind][label]
            cpu = phase["cpu_ms_per_request"]
            latency = phase["latency_ms"]
            applied = (
                f"{phase['applied']} ({phase['applied_rate']:.0f}/s)" if kind == "spends" else "-"
            )
            rows.append(
                (
                    f"{kind}, {name}",
                    cell(cpu.get("api"), 3),
                    cell(cpu.get("postgres"), 3),
                    cell(cpu.get("celery_worker"), 3) if kind == "spends" else "-",
                    f"{phase['requests_per_second']:.0f}",
                    f"{cell(latency['p50'], 1)}/{cell(latency['p99'], 1)}",
                    applied,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"wallet tokens: {result['count']} requests per phase on {result['connections']} "
        "keep-alive connections, one wallet"
    ]
    lines += [
        "  " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    ratios = [
        f"{kind} {result[kind]['token_to_key_api_cpu']:.2f}x"
        for kind in ("reads", "spends")
        if result[kind].get("token_to_key_api_cpu") is not None
    ]
    raw = result.get("raw_sql")
    lines.append(
        f"  API CPU, token / key: {', '.join(ratios) or '-'}; raw SQL write (hot) "
        + ("not run" if not raw else f"{raw['rate']:.0f}/s")
    )
    return "\n".join(lines)


def print_summary(runs: Sequence[RunResult], report: dict[str, Any], errors: int) -> None:
    """The table, latencies, memory, load and CPU lines, error samples and the verdict."""
    print()
    if runs:
        print(format_table(runs))
        print()
    if report.get("latency"):
        print(format_latency(report["latency"]))
        print()
    if report.get("slow_clients"):
        print(format_slow_clients(report["slow_clients"]))
        print()
    if report.get("ledger_time"):
        print(format_ledger_time(report["ledger_time"]))
        print()
    if report.get("wallet_tokens"):
        print(format_wallet_tokens(report["wallet_tokens"]))
        print()
    print(f"peak RSS per process (MB): {report['memory_peak_mb']}")
    environment = report["environment"]
    print(f"load average before/after: {environment['loadavg']} / {environment['loadavg_after']}")
    for run in runs:
        print(f"CPU ms per transaction, {run.pattern}: {run.cpu_ms_per_tx}")
    for run in runs:
        for sample in run.error_samples:
            print(f"  {run.pattern}: {sample}")
    for sample in (report.get("latency") or {}).get("error_samples", []):
        print(f"  latency: {sample}")
    for sample in (report.get("ledger_time") or {}).get("error_samples", []):
        print(f"  ledger-time: {sample}")
    for sample in (report.get("wallet_tokens") or {}).get("error_samples", []):
        print(f"  wallet-tokens: {sample}")
    invariants = report["invariants"]
    if not invariants["ok"]:
        print("LEDGER INVARIANTS VIOLATED:\n" + "\n".join(invariants["report"]), file=sys.stderr)
    elif errors:
        print(f"tally bench: {errors} errors (see above)", file=sys.stderr)
    else:
        print("ledger invariants hold; no errors")
