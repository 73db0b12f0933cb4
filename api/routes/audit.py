"""The audit trail of the caller's tenant: administrative actions, newest first."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.admin_schemas import AuditPageSchema, AuditQuerySchema
from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection
from api.respond import json_response
from ledger import audit

blp = Blueprint(
    "audit",
    __name__,
    url_prefix="/api/v1/audit-events",
    description="Who froze, unfroze or closed a wallet, changed a limit, managed endpoints"
    " or keys.",
)


@blp.route("")
class AuditEvents(MethodView):
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    @blp.problem(400, "invalid_cursor")
    def get(self, query: dict[str, Any]) -> Response:
        """Audit events, newest first; filter by `action`; keyset pages with `cursor`."""
        with request_connection() as conn:
            page = audit.list_events(
                conn,
                current_principal().tenant_id,
                limit=query["limit"],
                cursor=query.get("cursor"),
                action=query.get("action"),
            )
        return json_response(page)
