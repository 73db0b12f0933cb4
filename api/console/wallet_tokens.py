"""A wallet's wallet tokens on its page: the live ones (ledger/wallet_token_lists.py), each
revocable by a key that may revoke through the API (`DELETE /wallet-tokens/{id}`), with the
same use case, audited with the session's key as actor."""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort
from sqlalchemy import Connection
from werkzeug.wrappers import Response

from api.console.blueprint import authorize_as, back_with_notice, bp, principal
from api.database import request_unit_of_work
from ledger.errors import InvalidRequest
from ledger.identifiers import check_user_id
from ledger.wallet_token_lists import live_wallet_tokens
from ledger.wallet_tokens import WalletTokenNotFound, revoke_wallet_token

# The API operation whose authorization revoking shares.
REVOKE_ENDPOINT = ("wallet_tokens.WalletToken", "DELETE")


def wallet_tokens_of(
    conn: Connection, user_id: str, asset_codes: list[str]
) -> list[dict[str, Any]]:
    """The user's live tokens, each with `money_asset`: the asset whose decimals its amounts
    are written in (its one asset, else the wallet's one asset; None: minor units)."""
    tokens = live_wallet_tokens(conn, principal().tenant_id, user_id)
    for token in tokens:
        codes = token["asset_codes"]
        if codes is not None and len(codes) == 1:
            token["money_asset"] = codes[0]
        elif codes is None and len(asset_codes) == 1:
            token["money_asset"] = asset_codes[0]
        else:
            token["money_asset"] = None
    return tokens


@bp.post("/wallets/<user_id:user_id>/wallet-tokens/<token_id>/revoke")
def revoke_wallet_token_action(user_id: str, token_id: str) -> Response:
    authorize_as(*REVOKE_ENDPOINT)
    try:
        check_user_id(user_id)
        token = uuid.UUID(token_id)
    except (InvalidRequest, ValueError):
        abort(404, f"no wallet token {token_id}")
    signed_in = principal()
    with request_unit_of_work() as work:
        revoked = revoke_wallet_token(work, signed_in.tenant_id, token, actor=signed_in.actor)
        if revoked["user_id"] != user_id:
            # Another wallet's token: undone with the unit of work, as if it were not there.
            raise WalletTokenNotFound(f"no wallet token {token_id} on this wallet")
    return back_with_notice("console.wallet", "token-revoked", user_id=user_id)
