"""Celery's own command line works against a running `tally worker`, on each broker, through
the module-level app in worker/celery_cli.py built from the same environment."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.stack import Stack, stack_env, wait_until
from worker.celery_app import APPLY_TASK, make_celery

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0


def celery(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`celery -A worker.celery_cli <args>` with the stack's environment (BROKER_URL,
    TALLY_QUEUE, DATABASE_URL)."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.celery_cli", *args],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def replies(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def worker_stack(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One `tally worker`, nothing else."""
    stack = Stack(
        database_url,
        broker_url,
        tmp_path_factory.mktemp("celery-cli-logs"),
        stack_env(database_url, broker_url),
    )
    stack.start_worker(relay=False)
    yield stack
    stack.stop()


def worker_pid(stack: Stack) -> int:
    (worker,) = stack.workers
    return stack.children.processes[worker.celery].pid


@pytest.fixture(scope="module")
def node_name(worker_stack: Stack) -> str:
    """The Celery node name of the stack's worker (`tally worker` names it tally-<pid>@<host>),
    once it answers. Commands name it: other runs' workers may share the broker."""
    name = f"tally-{worker_pid(worker_stack)}@{socket.gethostname()}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    # Until the worker is up a ping gets no reply ("No nodes replied"): the ping is the probe.
    while celery(worker_stack, "inspect", "ping", "-d", name, "-t", "2").returncode != 0:
        assert worker_stack.children.exited() is None, worker_stack.children.exited()
        assert time.monotonic() < deadline, f"{name} did not answer a ping in {STARTUP_TIMEOUT}s"
    return name


def test_celery_inspect_ping_gets_a_pong_from_the_worker(
    worker_stack: Stack, node_name: str
) -> None:
    pong = replies(celery(worker_stack, "inspect", "ping", "-d", node_name, "--json"))

    assert pong == {node_name: {"ok": "pong"}}


def test_celery_inspect_and_status_report_on_the_worker(
    worker_stack: Stack, node_name: str
) -> None:
    stats = replies(celery(worker_stack, "inspect", "stats", "-d", node_name, "--json"))
    active = replies(celery(worker_stack, "inspect", "active", "-d", node_name, "--json"))
    status = celery(worker_stack, "status")

    assert stats[node_name]["pid"] == worker_pid(worker_stack)
    assert stats[node_name]["pool"]["implementation"] == "celery.concurrency.solo:TaskPool"
    assert stats[node_name]["broker"]["transport"] == urlsplit(worker_stack.broker_url).scheme
    assert active == {node_name: []}
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{node_name}: OK" in status.stdout


class TaskEvents:
    """Celery events from one worker, captured in a thread while the block runs."""

    def __init__(self, stack: Stack, node_name: str) -> None:
        self.app = make_celery(stack.broker_url, stack.env["TALLY_QUEUE"])
        self.node_name = node_name
        self.types: list[str] = []
        self._receiver: Any = None

    def __enter__(self) -> TaskEvents:
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        # On consuming, the receiver asks every worker for a heartbeat event: once ours
        # arrives, the capture is bound and the worker's event dispatcher is on.
        wait_until(lambda: "worker-heartbeat" in self.types, 30, "a worker heartbeat event")
        return self

    def __exit__(self, *_: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self.app.close()

    def _capture(self) -> None:
        with self.app.connection_for_read() as connection:
            self._receiver = self.app.events.Receiver(connection, handlers={"*": self._seen})
            self._receiver.capture(wakeup=True)

    def _seen(self, event: dict[str, Any]) -> None:
        if event.get("hostname") == self.node_name:
            self.types.append(event["type"])

    def run_a_task(self) -> None:
        """Send the worker a task that does nothing (it names no transactions)."""
        self.app.send_task(APPLY_TASK, args=[[]])


def tasks_run(stack: Stack, node_name: str) -> int:
    stats = replies(celery(stack, "inspect", "stats", "-d", node_name, "--json"))
    return int(stats[node_name]["total"].get(APPLY_TASK, 0))


def test_task_events_are_off_until_celery_control_enable_events_turns_them_on(
    worker_stack: Stack, node_name: str
) -> None:
    with TaskEvents(worker_stack, node_name) as events:
        before = tasks_run(worker_stack, node_name)
        events.run_a_task()
        wait_until(lambda: tasks_run(worker_stack, node_name) > before, 30, "the task to run")
        quiet = [t for t in events.types if t.startswith("task-")]

        enabled = replies(celery(worker_stack, "control", "enable_events", "-d", node_name, "-j"))
        try:
            events.run_a_task()
            wait_until(lambda: "task-succeeded" in events.types, 30, "a task-succeeded event")
        finally:
            disabled = replies(
                celery(worker_stack, "control", "disable_events", "-d", node_name, "-j")
            )

    assert quiet == [], "task events were sent before enable_events"
    assert enabled == [{node_name: {"ok": "task events enabled"}}]
    assert {"task-received", "task-started", "task-succeeded"} <= set(events.types)
    assert disabled == [{node_name: {"ok": "task events disabled"}}]
