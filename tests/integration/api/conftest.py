"""The API in process: `create_app` on the test database, driven through Flask's test client.

Submissions are published to a queue of this run that no worker consumes; the queue is
deleted afterwards. Nothing here needs a worker: these tests are about the HTTP edge.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from api.app import create_app
from config.settings import Settings
from tests.conftest import WEBHOOK_SECRET_KEYS, TenantFixture


def _drop_queue(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url, connect_timeout=3) as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)


@pytest.fixture(scope="session")
def app(database_url: str, redis_url: str) -> Iterator[Flask]:
    queue = f"tally-test-api-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        webhook_secret_keys=WEBHOOK_SECRET_KEYS,
        database_url=database_url,
        broker_url=redis_url,
        queue=queue,
        # Every test client calls from 127.0.0.1, and these tests (and the fuzzer) send
        # wrong keys by the hundred: they measure answers, not the flood limit, which
        # tests/integration/security/test_proxies_and_floods.py tests on apps of its own.
        auth_failures_per_minute=10**6,
    )
    app = create_app(settings)
    yield app
    context = app.extensions["tally"]
    context.waiter.close()
    context.keys.close()
    context.engine.dispose()
    _drop_queue(redis_url, queue)


NO_KEY = ""


class Api:
    """The test client acting for one tenant: its ordinary key unless `key` says otherwise
    (`NO_KEY` sends no Authorization header at all)."""

    def __init__(self, client: FlaskClient, tenant: TenantFixture, engine: Engine) -> None:
        self.client = client
        self.tenant = tenant
        self.engine = engine

    def _headers(self, key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        key = self.tenant.api_key if key is None else key
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return {**auth, **(headers or {})}

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> TestResponse:
        return self.client.open(
            f"/api/v1{path}", method=method, headers=self._headers(key, headers), **kwargs
        )

    def post(self, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        """POST a JSON body."""
        return self.request("POST", path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)


@pytest.fixture
def api(app: Flask, tenant: TenantFixture, engine: Engine) -> Api:
    return Api(app.test_client(), tenant, engine)
