"""Webhook secrets are sealed at rest: neither the table nor a dump of the database holds
one in clear, deliveries are still signed with them, and the sealing key can be rotated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from standardwebhooks.webhooks import Webhook

from config.database_urls import libpq_url
from config.settings import Settings
from ledger.db import make_engine, unit_of_work
from ledger.webhooks.deliveries import send_test_event
from ledger.webhooks.endpoints import create_endpoint, rotate_secret
from ledger.webhooks.secrets import new_key
from tally.stack import scratch_database
from tally.webhook_receiver import WebhookReceiver
from tests.conftest import WEBHOOK_SECRET_KEYS, TenantFixture, make_tenant, secret_box
from tests.support.stack import eventually
from worker.webhook_dispatcher import WebhookDispatcher


def register(engine: Engine, tenant_id: uuid.UUID, url: str) -> dict:
    with unit_of_work(engine) as work:
        return create_endpoint(work, tenant_id, url=url, box=secret_box(), allow_private=True)


def clear_forms(secret: str) -> list[str]:
    """How a secret could appear in clear: whole, or its base64 key alone."""
    return [secret, secret.removeprefix("whsec_")]


def test_the_table_holds_no_webhook_secret_in_clear(engine: Engine, tenant: TenantFixture):
    endpoint = register(engine, tenant.id, "http://127.0.0.1:9/hooks")
    with unit_of_work(engine) as work:
        rotated = rotate_secret(
            work, tenant.id, uuid.UUID(endpoint["id"]), overlap_seconds=60, box=secret_box()
        )

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT row_to_json(w)::text FROM webhook_endpoints w WHERE id = :id"),
            {"id": endpoint["id"]},
        ).scalar_one()
        sealed = conn.execute(
            text(
                "SELECT secret_sealed, previous_secret_sealed FROM webhook_endpoints WHERE id = :id"
            ),
            {"id": endpoint["id"]},
        ).one()

    for secret in (endpoint["secret"], rotated["secret"]):
        for form in clear_forms(secret):
            assert form not in row
    assert secret_box().open(sealed.secret_sealed) == rotated["secret"]
    assert secret_box().open(sealed.previous_secret_sealed) == endpoint["secret"]


def test_the_database_refuses_a_secret_written_in_clear(engine: Engine, tenant: TenantFixture):
    endpoint = register(engine, tenant.id, "http://127.0.0.1:9/hooks")

    refused = pytest.raises(IntegrityError, match="ck_webhook_endpoints_secrets_sealed")
    with refused, unit_of_work(engine) as work:
        work.connection.execute(
            text("UPDATE webhook_endpoints SET secret_sealed = :clear WHERE id = :id"),
            {"clear": endpoint["secret"], "id": endpoint["id"]},
        )


def test_a_data_dump_of_the_database_holds_no_webhook_secret(
    engine: Engine, tenant: TenantFixture, database_url: str
):
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed")
    endpoint = register(engine, tenant.id, "http://127.0.0.1:9/hooks")

    dump = subprocess.run(
        [pg_dump, "--data-only", f"--dbname={libpq_url(database_url)}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout

    assert endpoint["id"] in dump  # the row is there, sealed
    for form in clear_forms(endpoint["secret"]):
        assert form not in dump


def test_deliveries_are_signed_with_the_sealed_secret(engine, tenant, database_url):
    with WebhookReceiver() as receiver:
        endpoint = register(engine, tenant.id, receiver.url("main"))
        with running_dispatcher(engine, database_url, WEBHOOK_SECRET_KEYS):
            send(engine, tenant.id, endpoint)
            (request,) = receiver.wait_for_count("main", 1)

    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"


# --- rotating the sealing key, on a database of its own (resealing touches every endpoint) --


@dataclass
class OwnDatabase:
    url: str
    engine: Engine
    tenant: TenantFixture


@pytest.fixture
def own_database(database_server_url: str) -> Iterator[OwnDatabase]:
    """A migrated database of this test's own, sealed under the run's key."""
    with scratch_database(database_server_url, "tally_secrets") as url:
        engine = make_engine(url, pool_size=4, max_overflow=8)
        try:
            yield OwnDatabase(url, engine, make_tenant(engine))
        finally:
            engine.dispose()


def send(engine: Engine, tenant_id: uuid.UUID, endpoint: dict) -> uuid.UUID:
    with unit_of_work(engine) as work:
        delivery = send_test_event(work, tenant_id, uuid.UUID(endpoint["id"]))
    return uuid.UUID(str(delivery["id"]))


class running_dispatcher:
    """A webhook dispatcher in a thread of this process, opening secrets with `keys`."""

    def __init__(self, engine: Engine, database_url: str, keys: tuple[str, ...]) -> None:
        settings = Settings(
            database_url=database_url,
            webhook_secret_keys=keys,
            webhook_allow_private_targets=True,
            webhook_retry_schedule=(0, 60),
            webhook_timeout_seconds=2.0,
            webhook_concurrency=4,
        )
        self.dispatcher = WebhookDispatcher(settings, engine)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.dispatcher.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> running_dispatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def reseal(database_url: str, keys: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """`tally webhook-secrets reseal` with these keys, as an operator runs it."""
    env = {**os.environ, "DATABASE_URL": database_url, "TALLY_WEBHOOK_SECRET_KEYS": ",".join(keys)}
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", "webhook-secrets", "reseal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_after_a_new_key_and_a_reseal_the_old_key_can_go_and_deliveries_still_verify(
    own_database: OwnDatabase,
):
    db = own_database
    old = WEBHOOK_SECRET_KEYS
    newer = (new_key(),)
    with WebhookReceiver() as receiver:
        endpoint = register(db.engine, db.tenant.id, receiver.url("main"))

        resealed = reseal(db.url, newer + old)

        assert resealed.returncode == 0, resealed.stderr
        assert json.loads(resealed.stdout) == {
            "resealed": 1,
            "unreadable": [],
            "signing_keys_resealed": 0,
            "unreadable_signing_keys": [],
        }
        with running_dispatcher(db.engine, db.url, newer):
            send(db.engine, db.tenant.id, endpoint)
            (request,) = receiver.wait_for_count("main", 1)

    assert Webhook(endpoint["secret"]).verify(request.body, request.headers)


def test_reseal_exits_1_naming_the_endpoints_no_key_opens(own_database: OwnDatabase):
    db = own_database
    endpoint = register(db.engine, db.tenant.id, "http://127.0.0.1:9/hooks")

    refused = reseal(db.url, (new_key(),))

    assert refused.returncode == 1
    assert endpoint["id"] in refused.stderr
    assert json.loads(refused.stdout) == {
        "resealed": 0,
        "unreadable": [endpoint["id"]],
        "signing_keys_resealed": 0,
        "unreadable_signing_keys": [],
    }
    # Nothing was lost: the run's key still opens it, and a reseal with it succeeds.
    assert reseal(db.url, WEBHOOK_SECRET_KEYS).returncode == 0


def test_a_secret_no_key_opens_fails_the_attempt_with_its_reason(own_database: OwnDatabase):
    db = own_database
    with WebhookReceiver() as receiver:
        endpoint = register(db.engine, db.tenant.id, receiver.url("main"))
        delivery_id = send(db.engine, db.tenant.id, endpoint)

        with running_dispatcher(db.engine, db.url, (new_key(),)) as running:
            attempt = eventually(lambda: first_attempt(db.engine, delivery_id), what="attempt")
            assert running.thread.is_alive()

        assert receiver.received("main") == []
    assert attempt.status_code is None
    assert "signing secret cannot be opened" in attempt.error
    with db.engine.connect() as conn:
        delivery = conn.execute(
            text("SELECT status, last_error FROM webhook_deliveries WHERE id = :id"),
            {"id": delivery_id},
        ).one()
    # Retried on the schedule: restoring the key lets it through.
    assert delivery.status == "pending"
    assert "signing secret cannot be opened" in delivery.last_error


def first_attempt(engine: Engine, delivery_id: uuid.UUID):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status_code, error FROM webhook_attempts WHERE delivery_id = :id"),
            {"id": delivery_id},
        ).first()
