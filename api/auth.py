"""Bearer API keys: each request acts for exactly one tenant."""

from __future__ import annotations

from flask import g, request

from api.database import request_connection
from api.problems import ApiProblem
from ledger.tenants import Principal, authenticate


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    principal: Principal | None = g.get("principal")
    if principal is None:  # pragma: no cover - every protected view runs after authenticate
        raise ApiProblem(401, "missing_api_key", "Send Authorization: Bearer <api key>.")
    return principal


def require_admin() -> Principal:
    principal = current_principal()
    if not principal.is_admin:
        raise ApiProblem(403, "admin_key_required", "This operation needs an admin API key.")
    return principal


def authenticate_request() -> None:
    """Resolve the bearer key to a principal, or answer 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiProblem(
            401,
            "missing_api_key",
            "Send Authorization: Bearer <api key>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiProblem(
            401,
            "invalid_authorization",
            "Authorization must be 'Bearer <api key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with request_connection() as conn:
        principal = authenticate(conn, key.strip())
    if principal is None:
        raise ApiProblem(
            401,
            "invalid_api_key",
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    g.principal = principal
