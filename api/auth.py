"""Bearer API keys: each request acts for exactly one tenant."""

from __future__ import annotations

from flask import g, request

from api.context import tally
from api.database import request_unit_of_work
from api.problems import ApiProblem
from api.rate_limits import Decision
from ledger.db import bind_tenant
from ledger.keys import Principal, authenticate_hash, hash_api_key, well_formed_api_key


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    principal: Principal | None = g.get("principal")
    if principal is None:  # pragma: no cover - every protected view runs after authenticate
        raise ApiProblem(401, "missing_api_key", "Send Authorization: Bearer <api key>.")
    return principal


def authenticate_request(*, confirm: bool) -> None:
    """Resolve the bearer key to a principal, or answer 401 (429 for an address past its
    failed authentications).

    A key looked up recently comes from the process's cache (api/key_cache.py) unless
    `confirm`: then the database says whether it is live now. Submissions need no
    confirmation here because their insert confirms the key itself. A key not shaped like
    an issued one is refused without a query.
    """
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiProblem(
            401,
            "missing_api_key",
            "Send Authorization: Bearer <api key>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    context = tally()
    scheme, _, key = header.partition(" ")
    key = key.strip()
    bearer = scheme.lower() == "bearer" and bool(key)
    key_hash = hash_api_key(key) if bearer and well_formed_api_key(key) else None
    cached = context.keys.get(key_hash) if key_hash is not None else None
    failures = context.auth_failures
    address = request.remote_addr or ""
    # A key this process has found live lately passes from anywhere: a flood from an
    # operator's own address must not lock its working clients out.
    if cached is None:
        budget = failures.check(address)
        if not budget.allowed:
            raise too_many_failures(budget)
    if not bearer:
        failures.count(address)
        raise ApiProblem(
            401,
            "invalid_authorization",
            "Authorization must be 'Bearer <api key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = None if confirm else cached
    if principal is None and key_hash is not None:
        # A unit of work of its own: the lookup stamps the key's last use, and the tenant's
        # transactions begin afresh, bound to the tenant (ledger/db.py, `bind_tenant`).
        with request_unit_of_work() as work:
            principal = authenticate_hash(work, key_hash)
        if principal is not None:
            context.keys.put(key_hash, principal)
    if principal is None:
        failures.count(address)
        raise ApiProblem(
            401,
            "invalid_api_key",
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    g.principal = principal
    bind_tenant(principal.tenant_id)


def too_many_failures(budget: Decision) -> ApiProblem:
    return ApiProblem(
        429,
        "too_many_auth_failures",
        f"Too many failed authentications from this address ({budget.policy.quota} a"
        f" minute); retry after {budget.reset_seconds} s.",
        headers={"Retry-After": str(budget.reset_seconds), **budget.headers()},
    )
