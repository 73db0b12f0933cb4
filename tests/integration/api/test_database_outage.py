"""With the ledger database unreachable the API answers 503 problem+json, never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask

from api.app import create_app
from config.settings import Settings
from tests.conftest import WEBHOOK_SECRET_KEYS
from tests.support.stack import free_port

# Shaped like an issued key, so that authentication looks it up (a malformed one is refused
# before any database work).
WELL_FORMED_KEY = "tally_" + "A" * 43


@pytest.fixture(scope="module")
def app_without_database(redis_url: str) -> Iterator[Flask]:
    # Nothing listens on this port; engines connect lazily, so the app still builds.
    settings = Settings(
        webhook_secret_keys=WEBHOOK_SECRET_KEYS,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/tally",
        broker_url=redis_url,
        queue=f"tally-test-nodb-{uuid.uuid4().hex[:10]}",
    )
    app = create_app(settings)
    yield app
    app.extensions["tally"].engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", f"/api/v1/transactions/{uuid.uuid4()}", None, id="status"),
        pytest.param(
            "POST",
            "/api/v1/wallets/topup",
            {"user_id": "a", "asset_code": "EUR", "amount": 1, "reference_id": "r"},
            id="submission",
        ),
        pytest.param("GET", "/api/v1/wallets/a/balance?asset_code=EUR", None, id="balance"),
    ],
)
def test_request_during_a_database_outage_is_told_to_retry(
    app_without_database: Flask, method: str, path: str, body: object
) -> None:
    client = app_without_database.test_client()

    response = client.open(
        path, method=method, json=body, headers={"Authorization": f"Bearer {WELL_FORMED_KEY}"}
    )

    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_health_reports_the_database_unavailable(app_without_database: Flask) -> None:
    response = app_without_database.test_client().get("/api/v1/health")

    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "database": "unavailable", "broker": "ok"}
    assert int(response.headers["Retry-After"]) > 0


def test_a_connection_the_database_dropped_is_a_503_even_before_the_first_statement(
    database_url: str, redis_url: str, engine, tenant
) -> None:
    """A restart (or an administrator) terminates the API's pooled connection; the next
    request's key comes from the cache, so the first thing to touch the dead connection is
    binding the tenant (api/database.py). It is answered 503, not 500."""
    from sqlalchemy import text

    app = create_app(
        Settings(
            webhook_secret_keys=WEBHOOK_SECRET_KEYS,
            database_url=database_url,
            broker_url=redis_url,
            queue=f"tally-test-drop-{uuid.uuid4().hex[:10]}",
            api_threads=1,  # one pooled connection: the next request gets the dropped one
        )
    )
    context = app.extensions["tally"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {tenant.read_api_key}"}
    path = f"/api/v1/transactions/{uuid.uuid4()}"
    try:
        assert client.get(path, headers=headers).status_code == 404  # the key is now cached
        with context.engine.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar()

        dropped = client.get(path, headers=headers)
        after = client.get(path, headers=headers)
    finally:
        context.waiter.close()
        context.keys.close()
        context.engine.dispose()

    assert dropped.status_code == 503, dropped.get_data(as_text=True)
    assert dropped.get_json()["code"] == "database_unavailable"
    assert after.status_code == 404  # the pool let the dead connection go


def test_a_connection_the_database_drops_after_the_view_has_answered_is_no_500(
    database_url: str, redis_url: str, engine, tenant
) -> None:
    """PostgreSQL restarts between a view's last statement and the end of the request: the
    request's connection still holds the view's read transaction, and returning it to the
    pool rolls that back on a dead connection. The answer is already decided; the chaos run
    saw it turned into a 500."""
    from flask import Response, g
    from sqlalchemy import text

    app = create_app(
        Settings(
            webhook_secret_keys=WEBHOOK_SECRET_KEYS,
            database_url=database_url,
            broker_url=redis_url,
            queue=f"tally-test-late-drop-{uuid.uuid4().hex[:10]}",
            api_threads=1,
        )
    )

    @app.after_request
    def _restart_between_view_and_teardown(response: Response) -> Response:
        held = g.get("db")
        if held is not None:
            backend = held.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
        return response

    context = app.extensions["tally"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {tenant.read_api_key}"}
    path = f"/api/v1/transactions/{uuid.uuid4()}"
    try:
        answered = client.get(path, headers=headers)
        after = client.get(path, headers=headers)
    finally:
        context.waiter.close()
        context.keys.close()
        context.engine.dispose()

    assert answered.status_code == 404, answered.get_data(as_text=True)
    assert after.status_code == 404  # the pool let the dead connection go
