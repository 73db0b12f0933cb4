"""The API app on the test database for the fuzzer, and the keys it calls with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from sqlalchemy import Engine

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant, set_rate_limit

# The in-process app of the API tests: real PostgreSQL, real Redis, no worker.
from tests.integration.api.conftest import app  # noqa: F401


@pytest.fixture(scope="session")
def api_schema(app: Flask) -> Iterator[schemathesis.BaseSchema]:  # noqa: F811
    """The app's own OpenAPI document, served by the app."""
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture(scope="module")
def keys(engine: Engine) -> dict[str, str]:
    """One tenant's keys of every scope, and keys that are no key at all."""
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, f"fuzz-{uuid.uuid4().hex[:8]}")
        create_asset(work, tenant_id, "EUR", "Euro", 2)
        # The fuzzer measures answers, not the limiter: its keys are not throttled.
        set_rate_limit(work, tenant_id, 1_000_000)
        return {
            "admin": issue_api_key(work, tenant_id, "admin")["api_key"],
            "write": issue_api_key(work, tenant_id, "write")["api_key"],
            "read": issue_api_key(work, tenant_id, "read")["api_key"],
            "unknown": "tally_" + uuid.uuid4().hex,
            "malformed": "not a key \u00e9",
            "none": "",
        }
