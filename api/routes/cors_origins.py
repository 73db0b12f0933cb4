"""The browser origins the tenant's wallet tokens may be used from (ledger/cors_origins.py,
api/cors.py)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.wallet_token_schemas import CorsOriginsSchema
from ledger.cors_origins import list_origins, replace_origins
from ledger.vocabulary import Scope

blp = Blueprint(
    "cors_origins",
    __name__,
    url_prefix="/api/v1/cors-origins",
    description="The origins a wallet owner's browser app may call the API from.",
)


@blp.route("")
class CorsOrigins(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(CorsOriginsSchema)
    @blp.response(200, CorsOriginsSchema)
    @blp.problem(422, "invalid_origin")
    def put(self, body: dict[str, Any]) -> Response:
        """Set the allowed origins to exactly these (at most 50); audited. Takes effect
        at once in every API process."""
        principal = current_principal()
        with request_unit_of_work() as work:
            origins = replace_origins(
                work, principal.tenant_id, body["origins"], actor=principal.actor
            )
        return json_response(origins)

    @blp.response(200, CorsOriginsSchema)
    def get(self) -> Response:
        """The allowed origins."""
        with request_connection() as conn:
            return json_response(list_origins(conn, current_principal().tenant_id))
