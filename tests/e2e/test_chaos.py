"""`tally bench --pattern chaos`, short: load while workers and the relay are SIGKILLed,
PostgreSQL and the broker restart and the webhook receiver goes away; the run itself checks
that every accepted submission has exactly one outcome, nothing was applied twice, the
ledger holds, every event reached the receiver signed, and the API answered 503 (never
500) while the database was down. It restarts the broker: on RabbitMQ, the shared one's
application (`rabbitmqctl stop_app` / `start_app`), which no other test uses meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FAULTS = {
    "kill a worker",
    "kill the relay",
    "restart PostgreSQL",
    "restart the broker",
    "take the receiver down",
}


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_nothing_accepted_is_lost_or_doubled_while_everything_fails(
    broker: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "tally.cli", "bench", "--pattern", "chaos", "--broker", broker,
        "--chaos-seconds", "30", "--rate", "100", "--json", str(tmp_path / "chaos.json"),
    ]  # fmt: skip
    if broker == "amqp":
        command += ["--broker-url", request.getfixturevalue("amqp_url")]

    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads((tmp_path / "chaos.json").read_text())
    assert report["violations"] == []
    assert {fault["what"] for fault in report["faults"]} == FAULTS
    assert sum(f["what"] == "kill a worker" for f in report["faults"]) >= 2
    assert report["transactions_accepted"] >= 2500
    assert report["database_outage"]["answers_while_down"].get("503", 0) > 0
    assert "violations: 0" in finished.stdout
