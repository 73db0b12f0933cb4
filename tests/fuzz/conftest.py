"""The API app on the test database for the fuzzer, and the keys it calls with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.tenants import provision_tenant
from ledger.vocabulary import Scope

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
        # The fuzzer measures answers, not the limiter: its keys are not throttled.
        tenant = provision_tenant(
            work, f"fuzz-{uuid.uuid4().hex[:8]}", scopes=list(Scope), rate_limit_per_second=10**6
        )
        return {
            **{str(scope): tenant.key(scope) for scope in Scope},
            "unknown": "tally_" + uuid.uuid4().hex,
            "malformed": "not a key \u00e9",
            "none": "",
        }
