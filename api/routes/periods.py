"""Closed periods of the caller's tenant: close the ledger through a time, list the closes."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection, request_unit_of_work
from api.period_schemas import PeriodCloseSchema, PeriodSchema
from api.respond import json_response
from ledger.periods import close_period, list_periods
from ledger.vocabulary import Scope

blp = Blueprint(
    "periods",
    __name__,
    url_prefix="/api/v1/periods",
    description="Closed periods: nothing may land at or before a close.",
)


@blp.route("/close")
class PeriodClose(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(PeriodCloseSchema)
    @blp.response(201, PeriodSchema)
    @blp.problem(409, "period_already_closed", "period_not_quiet")
    @blp.problem(422, "invalid_through")
    def post(self, body: dict[str, Any]) -> Response:
        """Close the ledger through a time: snapshot every balance, refuse later backdating
        into it (admin keys only)."""
        principal = current_principal()
        with request_unit_of_work() as work:
            closed = close_period(work, principal.tenant_id, body["through"], actor=principal.actor)
        return json_response(closed, 201)


@blp.route("")
class Periods(MethodView):
    @blp.response(200, PeriodSchema(many=True))
    def get(self) -> Response:
        """The tenant's closes, latest first."""
        with request_connection() as conn:
            return json_response(list_periods(conn, current_principal().tenant_id))
