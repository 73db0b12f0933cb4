"""API keys of the caller's tenant: create one with a scope, list them, revoke one."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from api.admin_schemas import ApiKeyCreateSchema, ApiKeySchema, ApiKeyWithSecretSchema
from api.auth import current_principal
from api.blueprint import Blueprint
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from ledger.keys import issue_api_key, list_api_keys, revoke_api_key
from ledger.vocabulary import Scope

blp = Blueprint(
    "keys",
    __name__,
    url_prefix="/api/v1/api-keys",
    description="The tenant's API keys (admin keys only).",
)


@blp.route("")
class ApiKeys(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(ApiKeyCreateSchema)
    @blp.response(201, ApiKeyWithSecretSchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Create a key of a scope; the answer carries the key itself, shown only now."""
        principal = current_principal()
        with request_unit_of_work() as work:
            key = issue_api_key(work, principal.tenant_id, body["scope"], actor=principal.actor)
        return json_response(key, 201)

    @blp.requires(Scope.ADMIN)
    @blp.response(200, ApiKeySchema(many=True))
    def get(self) -> Response:
        """The tenant's keys with their prefix, scope and last use (never the keys)."""
        with request_connection() as conn:
            return json_response(list_api_keys(conn, current_principal().tenant_id))


@blp.route("/<uuid:key_id>")
class ApiKey(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.response(200, ApiKeySchema)
    @blp.problem(404, "api_key_not_found")
    def delete(self, key_id: uuid.UUID) -> Response:
        """Revoke a key: every API process refuses it within a second."""
        principal = current_principal()
        with request_unit_of_work() as work:
            key = revoke_api_key(work, principal.tenant_id, key_id, actor=principal.actor)
        # Other processes hear of it through LISTEN/NOTIFY; this one knows now.
        tally().keys.forget(key["id"])
        return json_response(key)
