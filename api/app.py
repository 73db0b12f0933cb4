"""The API's Flask app factory: engines, the publisher and the per-process helpers are made
here, never at import time."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response
from flask_smorest import Api
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from api import console, converters, cors, database, metrics
from api.auth_failures import AuthFailures
from api.combiner import SubmissionCombiner
from api.context import Tally
from api.docs import init_app as init_docs
from api.guard import add_rate_limit_headers, guard_request
from api.key_cache import KeyCache
from api.problems import from_http_exception, register_problem_handlers
from api.rate_limits import RateLimiter, storage_url
from api.routes import (
    assets,
    audit,
    cors_origins,
    events,
    health,
    keys,
    periods,
    reports,
    seals,
    system_accounts,
    transactions,
    wallet_token_issuers,
    wallet_tokens,
    wallets,
    webhooks,
)
from api.routing import RoutedFlask
from api.schemas import ProblemSchema
from api.waiter import TransactionWaiter
from config.settings import API_PROBE_THREADS, Settings
from ledger.db import (
    LoginRefused,
    bind_transactions_to_tenant,
    guard_api_login,
    make_engine,
)
from ledger.webhooks.secrets import SecretBox
from worker.publisher import Publisher

log = logging.getLogger(__name__)


class ProblemApi(Api):
    """flask-smorest's Api, answering its HTTP errors as problem+json."""

    # Documents the default error response as the problem+json every error really is.
    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return from_http_exception(error)


def create_app(
    settings: Settings | None = None, test_config: dict[str, Any] | None = None
) -> Flask:
    """Build the API app; engines and broker connections are made here, never at import.

    Refuses to build (LoginRefused) when its database login could undo row-level security,
    and (SettingsError) without TALLY_WEBHOOK_SECRET_KEYS: registering or rotating an
    endpoint seals its secret, so a missing key is found at start, not by a tenant."""
    settings = settings or Settings.from_env()
    secret_box = SecretBox(settings.require_webhook_secret_keys())
    app = RoutedFlask(__name__)
    app.config.update(
        API_TITLE="Tally",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.update(test_config or {})
    # The API's own login, never the owner's (docs/security.md#roles-and-logins).
    database_url = settings.require_api_database_url()
    # A connection per Flask thread (the health probes' included): an overflow connection
    # would be opened and closed per request (a PostgreSQL backend started each time).
    engine = make_engine(
        database_url,
        pool_size=settings.api_threads + API_PROBE_THREADS,
        max_overflow=4,
        pre_ping=False,
        generic_plans=True,
    )
    try:
        guard_api_login(engine)
    except OperationalError as error:
        # The app builds without the database (it answers 503 until it is back); every
        # connection it opens later is checked all the same.
        log.warning("could not check the API's database login now: %s", error.orig)
    except LoginRefused:
        engine.dispose()
        raise
    bind_transactions_to_tenant(engine)
    app.extensions["tally"] = Tally(
        settings=settings,
        engine=engine,
        publisher=Publisher(
            settings.require_broker_url(),
            settings.queue,
            linger=settings.publish_linger_seconds,
            max_ids=settings.batch_size,
        ),
        waiter=TransactionWaiter(
            database_url,
            per_process=settings.long_polls_per_process,
            per_tenant=settings.long_polls_per_tenant,
        ),
        keys=KeyCache(database_url, settings.key_cache_seconds),
        combiner=SubmissionCombiner(),
        limiter=RateLimiter(
            storage_url(settings.rate_limit_storage_url, settings.broker_url),
            flush_seconds=settings.rate_limit_flush_seconds,
        ),
        auth_failures=AuthFailures(settings.auth_failures_per_minute),
        secret_box=secret_box,
    )
    register_problem_handlers(app)
    database.init_app(app)
    # Before the guard: a request refused by authentication is still timed.
    metrics.init_app(app, settings, waiter=app.extensions["tally"].waiter)
    api = ProblemApi(app)
    converters.init_app(app, api)
    for module in (
        health,
        transactions,
        wallets,
        wallet_tokens,
        wallet_token_issuers,
        cors_origins,
        assets,
        system_accounts,
        webhooks,
        keys,
        audit,
        events,
        periods,
        reports,
        seals,
    ):
        api.register_blueprint(module.blp)

    init_docs(app)
    console.init_app(app)
    cors.init_app(app)
    app.before_request(guard_request)
    app.after_request(add_rate_limit_headers)
    if settings.trusted_proxies:
        # Each trusted hop appends the address it saw and the scheme it was reached by;
        # request.remote_addr and request.is_secure then describe the browser's request
        # (per-address limits, the Secure cookie). Without trusted proxies anyone could
        # send those headers, so they are not read at all.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]

    return app
