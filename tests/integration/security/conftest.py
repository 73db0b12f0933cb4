"""Apps built with the settings a security test needs, on the test database and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from api.app import create_app
from config.settings import Settings
from tests.conftest import WEBHOOK_SECRET_KEYS

# The in-process app and test client of the API tests, for the scope and audit tests.
from tests.integration.api.conftest import api, app  # noqa: F401


@pytest.fixture
def make_app(database_url: str, redis_url: str) -> Iterator[Callable[..., Flask]]:
    """Build API apps with some settings changed; each is closed after the test."""
    apps: list[Flask] = []

    def build(**changes: Any) -> Flask:
        settings = Settings(
            webhook_secret_keys=WEBHOOK_SECRET_KEYS,
            database_url=database_url,
            broker_url=redis_url,
            queue=f"tally-test-security-{uuid.uuid4().hex[:10]}",
            **changes,
        )
        built = create_app(settings)
        apps.append(built)
        return built

    yield build
    for built in apps:
        context = built.extensions["tally"]
        context.waiter.close()
        context.keys.close()
        context.engine.dispose()
