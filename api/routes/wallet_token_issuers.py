"""A merchant's own issuers of wallet tokens (admin keys): register one with its public
keys, list them, remove one (ledger/wallet_token_issuers.py)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.wallet_token_schemas import WalletTokenIssuerCreateSchema, WalletTokenIssuerSchema
from ledger.vocabulary import Scope
from ledger.wallet_token_issuers import create_issuer, delete_issuer, list_issuers

blp = Blueprint(
    "wallet_token_issuers",
    __name__,
    url_prefix="/api/v1/wallet-token-issuers",
    description="A merchant's own issuers of wallet tokens and their public keys.",
)


@blp.route("")
class WalletTokenIssuers(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(WalletTokenIssuerCreateSchema)
    @blp.response(201, WalletTokenIssuerSchema)
    @blp.problem(409, "wallet_token_issuer_exists")
    @blp.problem(422, "invalid_jwks", "private_key_uploaded")
    def post(self, body: dict[str, Any]) -> Response:
        """Register an issuer: its `iss`, the algorithms it signs with and its public keys
        (a JWKS, uploaded: Tally fetches nothing). Audited."""
        principal = current_principal()
        with request_unit_of_work() as work:
            issuer = create_issuer(
                work,
                principal.tenant_id,
                iss=body["iss"],
                algorithms=body["algorithms"],
                jwks=body["jwks"],
                actor=principal.actor,
            )
        return json_response(issuer, 201)

    @blp.requires(Scope.ADMIN)
    @blp.response(200, WalletTokenIssuerSchema(many=True))
    def get(self) -> Response:
        """The tenant's issuers."""
        with request_connection() as conn:
            return json_response(list_issuers(conn, current_principal().tenant_id))


@blp.route("/<uuid:issuer_id>")
class WalletTokenIssuer(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.response(204)
    @blp.problem(404, "wallet_token_issuer_not_found")
    def delete(self, issuer_id: uuid.UUID) -> Response:
        """Remove an issuer: its tokens are refused from now on. Audited."""
        principal = current_principal()
        with request_unit_of_work() as work:
            delete_issuer(work, principal.tenant_id, issuer_id, actor=principal.actor)
        return Response(status=204)
