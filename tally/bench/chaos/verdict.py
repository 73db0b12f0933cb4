"""The chaos run's verdict: waiting for the backlog and the webhooks, every check of
docs/operations.md#the-chaos-run as a violation, and the printed report."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ledger import measurements
from ledger.webhooks.signing import message_id
from tally.bench.chaos.faults import RESTART_POSTGRES, Fault
from tally.bench.chaos.traffic import CLIENT_TIMEOUT_SECONDS, MerchantLoad
from tally.load_client import Probed
from tally.webhook_receiver import Received, WebhookReceiver

RECOVERY_LIMIT_SECONDS = 5.0
DRAIN_LIMIT_SECONDS = 300.0
# The merchant's endpoint on the receiver.
WEBHOOK_ROUTE = "merchant"


@dataclass
class ChaosRun:
    """What a finished run leaves to judge: its load, probes, faults and receiver."""

    broker: str
    rate: float
    seconds: float
    tenant_id: str
    load: MerchantLoad
    # A transaction read every 100 ms throughout; times on the same clock as `started`.
    probes: list[Probed]
    started: float
    faults: list[Fault]
    receiver: WebhookReceiver
    drained: bool = False
    drain_seconds: float = 0.0
    webhooks_missing: int = 0


def wait_drained(engine: Engine, tenant_id: str, timeout: float = DRAIN_LIMIT_SECONDS) -> bool:
    """Wait until none of the tenant's transactions is queued; whether that happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), engine.connect() as conn:
            if measurements.queued_count(conn, tenant_id) == 0:
                return True
        time.sleep(0.2)  # polling the backlog
    return False


def _deliveries(receiver: WebhookReceiver) -> list[Received]:
    return receiver.received(WEBHOOK_ROUTE)


def _verified(receiver: WebhookReceiver) -> set[str]:
    """The message ids that arrived whole with a valid signature."""
    return {r.headers.get("webhook-id", "") for r in _deliveries(receiver) if r.signature_valid}


def wait_webhooks(engine: Engine, tenant_id: str, receiver: WebhookReceiver, timeout: float) -> int:
    """Wait until the receiver has every decided transaction's event; how many are missing."""
    with engine.connect() as conn:
        wanted = {message_id(event) for event in measurements.decided_event_ids(conn, tenant_id)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not wanted - _verified(receiver):
            return 0
        time.sleep(0.5)  # polling the receiver's record
    return len(wanted - _verified(receiver))


def verdict(run: ChaosRun, engine: Engine) -> dict[str, Any]:
    """The run's report, with every violation found."""
    from ledger.verify import verify_ledger

    violations: list[str] = []
    load = run.load
    accepted = load.accepted_ids()
    never_accepted = [s for s in load.submissions if not s.accepted_id]
    if never_accepted:
        violations.append(f"{len(never_accepted)} submissions were never accepted")
    with engine.connect() as conn:
        statuses = measurements.status_counts(conn, run.tenant_id, "chaos-")
        found = measurements.decided_among(conn, run.tenant_id, accepted)
        doubled = measurements.doubled_journal_lines(conn, run.tenant_id)
        ledger = verify_ledger(conn, uuid.UUID(run.tenant_id))
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
    if not ledger.ok:
        violations.append("ledger invariants violated: " + "; ".join(ledger.lines()))
    if not run.drained:
        violations.append(
            f"the backlog did not drain within {DRAIN_LIMIT_SECONDS:.0f} s of the load's end"
        )
    if run.webhooks_missing:
        violations.append(
            f"{run.webhooks_missing} decided transactions' events never reached the receiver"
        )
    deliveries = _deliveries(run.receiver)
    invalid = [r.headers.get("webhook-id", "") for r in deliveries if r.signature_valid is False]
    if invalid:
        violations.append(
            f"{len(invalid)} webhook deliveries had no valid signature: {', '.join(invalid[:5])}"
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
    outage = database_outage(run.probes, run.faults, run.started)
    violations += outage.pop("violations")
    return {
        "broker": run.broker,
        "offered_rate": run.rate,
        "seconds": run.seconds,
        "submissions": len(load.submissions),
        "transactions_accepted": len(accepted),
        "resent": sum(s.attempts - 1 for s in load.submissions),
        "answers": dict(answers.statuses),
        "statuses": statuses,
        "faults": [
            {"what": f.what, "at_s": round(f.at, 1), "done_at_s": round(f.done_at, 1)}
            for f in run.faults
        ],
        "database_outage": outage,
        "drain_seconds": round(run.drain_seconds, 1),
        "webhooks_received": len(_verified(run.receiver)),
        "webhook_bodies_cut_off": sum(not r.complete for r in deliveries),
        "violations": violations,
    }  # fmt: skip


def _answer(probed: Probed) -> str:
    """A probe's answer as the report names it."""
    if probed.timed_out:
        return "hung"
    return "no connection" if probed.status is None else str(probed.status)


def database_outage(probes: list[Probed], faults: list[Fault], started: float) -> dict[str, Any]:
    """What the probes saw while PostgreSQL was down and after it came back."""
    restart = next((f for f in faults if f.what == RESTART_POSTGRES), None)
    if restart is None or not probes:
        return {"violations": ["the database restart did not happen"]}
    down_from, back_at = restart.at, restart.done_at
    seen = [(p.answered_at - started, _answer(p), p.retry_after) for p in probes]
    during = [(t, s, r) for t, s, r in seen if down_from <= t <= back_at]
    after = [(t, s) for t, s, _ in seen if t > back_at]
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
    """The report as a few lines, each violation on its own."""
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
