"""Requests made with a wallet token (ledger/wallet_tokens.py): who the token speaks for,
and the few things it may do.

A bearer credential shaped like a JWT (API keys start `tally_`) is a wallet token. It is
verified against its tenant's keys, then the request works for that tenant and, in the
database too, for the token's user alone (`bind_user`: row-level security narrows every
read to the user's wallet, migration 0013). It may read its own wallet's balance,
journal, holds and statement and its own transactions; with `spend`, submit a spend
from it, and with `hold`, a hold, each within the token's limits. Anything else is 403
`token_scope`; another user's wallet is 404 `wallet_not_found`, as if it did not exist.

A request from a browser page (one with an `Origin` header) is refused 403
`origin_not_allowed` unless the token's own tenant allows that origin (api/cors.py), in
the transaction that verifies the token, so nothing of it is recorded.
"""

from __future__ import annotations

from typing import Any

from flask import g, request

from api.auth import too_many_failures
from api.context import tally
from api.database import request_unit_of_work
from api.problems import ApiProblem
from ledger.cors_origins import tenant_allows
from ledger.db import bind_tenant, bind_user, tenant_scope
from ledger.keys import Principal
from ledger.vocabulary import Scope
from ledger.wallet_token_issuers import verify_bearer_token
from ledger.wallet_tokens import (
    HOLD,
    SPEND,
    WalletClaims,
    WalletTokenRefused,
    claimed_audience,
    looks_like_jwt,
)

# What a token may read (GET, HEAD), by endpoint.
READABLE = frozenset(
    {
        "wallets.Balance",
        "wallets.History",
        "wallets.Holds",
        "wallets.Statement",
        "transactions.Transaction",
    }
)
# What it may submit, by endpoint: the transaction types each takes, and the scope each
# type needs.
SUBMITTING = {"wallets.Spend": "spend", "transactions.Transactions": None}
TYPE_SCOPES = {"spend": SPEND, "hold": HOLD}
# Fields that would move money anywhere but from the user's wallet to the tenant's own
# account: a token may not name them.
FOREIGN_FIELDS = ("to_user_id", "splits", "to_account", "postings", "original_transaction_id")


def wallet_bearer() -> str | None:
    """The request's bearer credential when it is a wallet token, else None."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and looks_like_jwt(credential):
        return credential
    return None


def current_wallet_claims() -> WalletClaims | None:
    """The verified wallet token of this request, or None for one made with an API key."""
    claims: WalletClaims | None = g.get("wallet_claims")
    return claims


def authenticate_wallet_token(token: str) -> WalletClaims:
    """Verify the token, or answer 401 with why; then bind the request to its tenant and
    user. The verification reads as the tenant the token claims: its key (or issuer) must
    be one of that tenant's, so a token for another audience finds none. A request with an
    `Origin` its tenant does not allow is refused 403 `origin_not_allowed` in the same
    transaction, so not even a merchant's token's first use is recorded."""
    # An address past its failed authentications is refused before the database is asked,
    # as for API keys (api/auth_failures.py).
    failures, address = tally().auth_failures, request.remote_addr or ""
    budget = failures.check(address)
    if not budget.allowed:
        raise too_many_failures(budget)
    try:
        tenant_id, _iss = claimed_audience(token)
        with tenant_scope(tenant_id), request_unit_of_work() as work:
            claims = verify_bearer_token(work.connection, token)
            origin = request.headers.get("Origin")
            if origin is not None and not tenant_allows(work.connection, tenant_id, origin):
                raise ApiProblem(
                    403,
                    "origin_not_allowed",
                    f"This tenant's wallet tokens may not be used from {origin}.",
                )
    except WalletTokenRefused as refused:
        failures.count(address)
        raise token_refused(refused) from None
    g.wallet_claims = claims
    # The answer names the origin (api/cors.py): the page may read it.
    g.cors_origin = origin
    # The principal the shared machinery (rate limits, the views' tenant) reads: the
    # token counts against a per-second budget of its own.
    g.principal = Principal(
        tenant_id=claims.tenant_id, key_id=claims.token_id, scope=Scope.READ, prefix="wallet"
    )
    bind_tenant(claims.tenant_id)
    bind_user(claims.user_id)
    return claims


def authorize_wallet_token(claims: WalletClaims, endpoint: str, method: str) -> None:
    """Refuse what the token may not do (403 `token_scope`, 404 for another user's wallet,
    422 `over_max_amount`)."""
    path_user = (request.view_args or {}).get("user_id")
    if method in ("GET", "HEAD") and endpoint in READABLE:
        if path_user is not None:
            # A wallet's read: its asset is in the query (a transaction's, once read).
            _check_asset(claims, request.args.get("asset_code"))
            if path_user != claims.user_id:
                raise _not_found()
        return
    if method != "POST" or endpoint not in SUBMITTING:
        raise _scope("A wallet token may not do this.")
    kind = SUBMITTING[endpoint]
    if kind is not None:
        _check_type(claims, kind)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return  # the view answers the malformed body
    kind = kind or body.get("type")
    _check_type(claims, kind)
    if body.get("user_id") != claims.user_id:
        raise _not_found()
    if any(body.get(name) is not None for name in FOREIGN_FIELDS):
        raise _scope("A wallet token moves money only from its wallet to the tenant.")
    _check_asset(claims, body.get("asset_code"))
    _check_amount(claims, body.get("amount"))


def check_wallet_asset(asset_code: str | None) -> None:
    """For a transaction a wallet token reads: 403 `token_scope` unless its asset is one
    of the token's (any asset for a token naming none)."""
    claims = current_wallet_claims()
    if claims is not None:
        _check_asset(claims, asset_code)


def _check_type(claims: WalletClaims, kind: Any) -> None:
    needed = TYPE_SCOPES.get(kind) if isinstance(kind, str) else None
    if needed is None or needed not in claims.scopes:
        raise _scope(f"This wallet token may not submit a {kind}.")


def _check_asset(claims: WalletClaims, asset_code: Any) -> None:
    if claims.asset_codes is not None and asset_code not in claims.asset_codes:
        raise _scope(f"This wallet token may not use the asset {asset_code}.")


def _check_amount(claims: WalletClaims, amount: Any) -> None:
    limit = claims.max_amount
    if isinstance(amount, str) and amount.isdigit():
        amount = int(amount)  # sent with `Tally-Amounts: string`
    if limit is not None and isinstance(amount, int) and amount > limit:
        raise ApiProblem(
            422, "over_max_amount", f"This wallet token moves at most {limit} per transaction."
        )


def token_refused(refused: WalletTokenRefused) -> ApiProblem:
    """The 401 answer to a wallet token refused (expired, revoked, not verifying...)."""
    return ApiProblem(
        401,
        refused.code,
        refused.message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _scope(detail: str) -> ApiProblem:
    return ApiProblem(403, "token_scope", detail)


def _not_found() -> ApiProblem:
    return ApiProblem(404, "wallet_not_found", "No such wallet.")
