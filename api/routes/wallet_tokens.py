"""Wallet tokens of the caller's tenant: issue one for a user's app, revoke one, and the
public keys that verify them (ledger/wallet_tokens.py, api/wallet_token_auth.py)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.wallet_token_schemas import (
    JwksSchema,
    WalletTokenCreateSchema,
    WalletTokenRevokedSchema,
    WalletTokenSchema,
)
from ledger.wallet_token_keys import jwks
from ledger.wallet_tokens import issue_wallet_token, revoke_wallet_token

blp = Blueprint(
    "wallet_tokens",
    __name__,
    url_prefix="/api/v1/wallet-tokens",
    description="Short-lived tokens letting a wallet owner's app read and spend its own wallet.",
)


@blp.route("")
class WalletTokens(MethodView):
    @blp.arguments(WalletTokenCreateSchema)
    @blp.response(201, WalletTokenSchema)
    @blp.problem(422, "invalid_user_id", "invalid_scope")
    def post(self, body: dict[str, Any]) -> Response:
        """Issue a token for one user's wallet (write keys); the answer carries it, shown
        only now. Audited."""
        principal = current_principal()
        with request_unit_of_work() as work:
            issued = issue_wallet_token(
                work,
                tally().secret_box,
                principal.tenant_id,
                user_id=body["user_id"],
                scopes=body["scopes"],
                ttl=body["ttl"],
                max_amount=body.get("max_amount"),
                spend_limit=body.get("spend_limit"),
                asset_codes=body.get("asset_codes"),
                actor=principal.actor,
            )
        return json_response(issued, 201)


@blp.route("/jwks")
class Jwks(MethodView):
    @blp.response(200, JwksSchema)
    def get(self) -> Response:
        """The tenant's public keys that verify its wallet tokens (a JWKS, Ed25519)."""
        with request_connection() as conn:
            return json_response(jwks(conn, current_principal().tenant_id))


@blp.route("/<uuid:token_id>")
class WalletToken(MethodView):
    @blp.response(200, WalletTokenRevokedSchema)
    @blp.problem(404, "wallet_token_not_found")
    def delete(self, token_id: uuid.UUID) -> Response:
        """Revoke a token (write keys): every request with it is refused from now on."""
        principal = current_principal()
        with request_unit_of_work() as work:
            revoked = revoke_wallet_token(
                work, principal.tenant_id, token_id, actor=principal.actor
            )
        return json_response(revoked)
