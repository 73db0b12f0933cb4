"""Reports in ledger time: the trial balance as of a moment, wallet movements per interval."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection
from api.period_schemas import (
    MovementsQuerySchema,
    MovementsSchema,
    TrialBalanceQuerySchema,
    TrialBalanceSchema,
)
from api.respond import json_response
from ledger.reports import movements, trial_balance

blp = Blueprint(
    "reports",
    __name__,
    url_prefix="/api/v1/reports",
    description="Reports by effective time: trial balance and movements.",
)


@blp.route("/balances")
class TrialBalance(MethodView):
    @blp.arguments(TrialBalanceQuerySchema, location="query")
    @blp.response(200, TrialBalanceSchema)
    @blp.problem(404, "asset_not_found")
    def get(self, query: dict[str, Any]) -> Response:
        """The trial balance of an asset as of a time: each system account, the wallets'
        total, and their sum (zero)."""
        with request_connection() as conn:
            report = trial_balance(
                conn, current_principal().tenant_id, query["asset_code"], query.get("as_of")
            )
        return json_response(report)


@blp.route("/movements")
class Movements(MethodView):
    @blp.arguments(MovementsQuerySchema, location="query")
    @blp.response(200, MovementsSchema)
    @blp.problem(404, "asset_not_found")
    @blp.problem(422, "invalid_range", "range_too_long")
    def get(self, query: dict[str, Any]) -> Response:
        """Wallet credits and debits per UTC day or hour and transaction type, by effective
        time in [from, to)."""
        with request_connection() as conn:
            report = movements(
                conn,
                current_principal().tenant_id,
                query["asset_code"],
                query["from_"],
                query["to"],
                query["interval"],
            )
        return json_response(report)
