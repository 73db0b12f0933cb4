"""The intake API: a Flask app factory; views parse JSON, call the ledger, render."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api import database, metrics
from api.auth import authenticate_request
from api.combiner import SubmissionCombiner
from api.context import Tally
from api.docs import render_docs
from api.key_cache import KeyCache
from api.problems import ApiProblem, from_http_exception, register_problem_handlers
from api.routes import assets, health, transactions, wallets, webhooks
from api.schemas import ProblemSchema
from api.waiter import TransactionWaiter
from config.settings import Settings
from ledger.db import make_engine
from worker.publisher import Publisher

PUBLIC_ENDPOINTS = {"health.Health", "api-docs.openapi_json", "docs", "metrics", "static"}
BODY_METHODS = {"POST", "PUT", "PATCH"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# Writes whose own statement confirms the caller's key (ledger/intake.py): they may take
# it from the cache. Every other write looks its key up first.
SELF_CONFIRMING = {
    "transactions.Transactions",
    "transactions.TransactionBatch",
    "wallets.Topup",
    "wallets.Bonus",
    "wallets.Spend",
}


class ProblemApi(Api):
    """flask-smorest's Api, answering its HTTP errors as problem+json."""

    # Documents the default error response as the problem+json every error really is.
    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return from_http_exception(error)


def create_app(
    settings: Settings | None = None, test_config: dict[str, Any] | None = None
) -> Flask:
    """Build the API app; engines and broker connections are made here, never at import."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
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
    database_url = settings.require_database_url()
    app.extensions["tally"] = Tally(
        settings=settings,
        # A connection per Flask thread: an overflow connection would be opened and closed
        # per request (a PostgreSQL backend started each time).
        engine=make_engine(
            database_url,
            pool_size=settings.api_threads,
            max_overflow=4,
            pre_ping=False,
            generic_plans=True,
        ),
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
    )
    register_problem_handlers(app)
    database.init_app(app)
    # Before the guard: a request refused by authentication is still timed.
    metrics.init_app(
        app,
        app.extensions["tally"].engine,
        settings.metrics_token,
        waiter=app.extensions["tally"].waiter,
    )
    api = ProblemApi(app)
    for module in (health, transactions, wallets, assets, webhooks):
        api.register_blueprint(module.blp)

    @app.get("/api/v1/docs")
    def docs() -> Response:
        """Human-readable API reference."""
        return Response(render_docs(api.spec.to_dict()), mimetype="text/html")

    @app.before_request
    def _guard() -> None:
        if request.endpoint is None:
            return  # 404 and 405 are answered by the error handlers
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        authenticate_request(
            confirm=request.method not in READ_METHODS and request.endpoint not in SELF_CONFIRMING
        )
        has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
        if request.method in BODY_METHODS and has_body and request.mimetype != "application/json":
            raise ApiProblem(
                415, "unsupported_media_type", "Send the body as Content-Type: application/json."
            )

    return app
