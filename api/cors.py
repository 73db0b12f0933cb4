"""CORS for wallet tokens: a wallet owner's browser app may call the routes a wallet
token may use (api/wallet_token_auth.py) from an origin its tenant allows
(ledger/cors_origins.py, `PUT /api/v1/cors-origins`).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) carries no credential, so it
is answered for a wallet token's route when some tenant allows the origin; any other
preflight is a 204 without CORS headers, which the browser takes as a refusal. The
request itself is then held to its own token's tenant (api/wallet_token_auth.py: 403
`origin_not_allowed`, before anything is recorded), so another tenant's allowing the
origin never lets a page spend. API-key requests never get CORS headers, and no answer
ever carries `Access-Control-Allow-Credentials`: the token travels in `Authorization`,
never in a cookie.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from api.database import request_connection
from api.wallet_token_auth import READABLE, SUBMITTING
from ledger.cors_origins import allowed_anywhere
from ledger.db import bind_tenant, bind_user

WALLET_TOKEN_ENDPOINTS = READABLE | frozenset(SUBMITTING)
ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Authorization, Content-Type"
MAX_AGE_SECONDS = 600
# What a page may read of an answer beyond the CORS-safelisted headers.
EXPOSE_HEADERS = "Location, Idempotent-Replayed, Retry-After, RateLimit, RateLimit-Policy"


def answer_preflight() -> Response | None:
    """Before the guard: answer a CORS preflight here (it carries no credential)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    response = Response(status=204)
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("Origin")
    if origin and request.endpoint in WALLET_TOKEN_ENDPOINTS and _allowed(origin):
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            }
        )
    return response


def add_cors_headers(response: Response) -> Response:
    """Name the origin on the answer to a wallet token's request from an allowed page."""
    origin: str | None = g.get("cors_origin")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.vary.add("Origin")
    return response


def _allowed(origin: str) -> bool:
    # No tenant is known: the question is asked of every tenant's list at once.
    bind_tenant(None)
    bind_user(None)
    with request_connection() as conn:
        return allowed_anywhere(conn, origin)


def init_app(app: Flask) -> None:
    """Before the guard, which would refuse a preflight for its missing credential."""
    app.before_request(answer_preflight)
    app.after_request(add_cors_headers)
