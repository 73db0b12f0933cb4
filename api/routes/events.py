"""The event feed: every event of the caller's tenant, once each, in one order."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection
from api.event_schemas import EventFeedQuerySchema, EventFeedSchema
from api.respond import json_response
from ledger.feed import read_feed

blp = Blueprint(
    "events",
    __name__,
    url_prefix="/api/v1/events",
    description="The events webhooks deliver, as a feed to read from any cursor without a gap.",
)


@blp.route("")
class Events(MethodView):
    @blp.arguments(EventFeedQuerySchema, location="query")
    @blp.response(200, EventFeedSchema)
    @blp.problem(400, "invalid_cursor")
    def get(self, query: dict[str, Any]) -> Response:
        """Events after the cursor `after`, oldest first; continue from `next_cursor`.

        An event appears once its writer and every transaction that began before it have
        ended, so a reader following `next_cursor` sees each event exactly once."""
        types = query.get("types")
        with request_connection() as conn:
            page = read_feed(
                conn,
                current_principal().tenant_id,
                after=query.get("after"),
                limit=query["limit"],
                user_id=query.get("user_id"),
                types=types.split(",") if types else None,
            )
        return json_response(page)
