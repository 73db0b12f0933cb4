"""Assets of a tenant: each has a code, a name and its number of decimal places."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.schemas import AssetSchema
from ledger.assets import create_asset, list_assets
from ledger.vocabulary import Scope

blp = Blueprint("assets", __name__, url_prefix="/api/v1/assets", description="Assets.")


@blp.route("")
class Assets(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(AssetSchema)
    @blp.response(201, AssetSchema)
    @blp.problem(409, "asset_exists")
    def post(self, body: dict[str, Any]) -> Response:
        """Register an asset and its system accounts (admin keys only)."""
        principal = current_principal()
        with request_unit_of_work() as work:
            asset = create_asset(
                work,
                principal.tenant_id,
                body["code"],
                body["name"],
                body["decimal_places"],
                actor=principal.actor,
            )
        return json_response(asset, 201)

    @blp.response(200, AssetSchema(many=True))
    def get(self) -> Response:
        """The tenant's assets."""
        with request_connection() as conn:
            return json_response(list_assets(conn, current_principal().tenant_id))
