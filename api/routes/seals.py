"""The seals of the caller's tenant: Merkle roots over its journal's hash chains, newest
first, for export to an auditor (docs/design.md#tamper-evidence)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection
from api.respond import json_response
from api.seal_schemas import SealPageSchema, SealQuerySchema
from ledger.seals import list_seals

blp = Blueprint(
    "seals",
    __name__,
    url_prefix="/api/v1/seals",
    description="Seals of the journal's hash chains, for an auditor to keep.",
)


@blp.route("")
class Seals(MethodView):
    @blp.arguments(SealQuerySchema, location="query")
    @blp.response(200, SealPageSchema)
    @blp.problem(400, "invalid_cursor")
    def get(self, query: dict[str, Any]) -> Response:
        """The tenant's seals, newest first; keyset pages with `cursor`."""
        with request_connection() as conn:
            page = list_seals(
                conn,
                current_principal().tenant_id,
                limit=query["limit"],
                cursor=query.get("cursor"),
            )
        return json_response(page)
