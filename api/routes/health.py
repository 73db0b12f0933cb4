"""Health: whether the database and the broker answer."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from api.blueprint import Blueprint
from api.context import tally
from api.database import request_connection
from api.problems import RETRY_AFTER_SECONDS
from api.respond import json_response
from api.schemas import HealthSchema
from ledger.db import database_answers

blp = Blueprint("health", __name__, url_prefix="/api/v1/health", description="Health.")


@blp.route("")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503,
        schema=HealthSchema,
        description="A dependency is unreachable",
        headers={"Retry-After": "Retry-After"},
    )
    def get(self) -> Response:
        """Database and broker reachability; 503 when either is down."""
        ctx = tally()
        try:
            with request_connection() as conn:
                database_answers(conn)
            database = "ok"
        except SQLAlchemyError:
            database = "unavailable"
        broker = "ok" if ctx.publisher.ping() else "unavailable"
        healthy = database == broker == "ok"
        body = {"status": "ok" if healthy else "degraded", "database": database, "broker": broker}
        if healthy:
            return json_response(body)
        return json_response(body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
