"""Bearer API keys: each request acts for exactly one tenant."""

from __future__ import annotations

from flask import g, request

from api.context import tally
from api.database import request_unit_of_work
from api.problems import ApiProblem
from ledger.db import bind_tenant
from ledger.keys import Principal, authenticate_hash, hash_api_key


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    principal: Principal | None = g.get("principal")
    if principal is None:  # pragma: no cover - every protected view runs after authenticate
        raise ApiProblem(401, "missing_api_key", "Send Authorization: Bearer <api key>.")
    return principal


def authenticate_request(*, confirm: bool) -> None:
    """Resolve the bearer key to a principal, or answer 401.

    A key looked up recently comes from the process's cache (api/key_cache.py) unless
    `confirm`: then the database says whether it is live now. Submissions need no
    confirmation here because their insert confirms the key itself.
    """
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
    key_hash = hash_api_key(key.strip())
    cache = tally().keys
    principal = None if confirm else cache.get(key_hash)
    if principal is None:
        # A unit of work of its own: the lookup stamps the key's last use, and the tenant's
        # transactions begin afresh, bound to the tenant (ledger/db.py, `bind_tenant`).
        with request_unit_of_work() as work:
            principal = authenticate_hash(work, key_hash)
        if principal is not None:
            cache.put(key_hash, principal)
    if principal is None:
        raise ApiProblem(
            401,
            "invalid_api_key",
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    g.principal = principal
    bind_tenant(principal.tenant_id)
