"""What runs before every view: who is calling, whether their key may do this, whether it
is within its rate limit, and whether the body is JSON."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request

from api.auth import authenticate_request
from api.context import tally
from api.database import request_connection
from api.permissions import READ_METHODS, SINGLE, authorize, handler_of, required_scope
from api.problems import ApiProblem
from api.rate_limits import Decision, Policy
from api.wallet_token_auth import authenticate_wallet_token, authorize_wallet_token, wallet_bearer
from ledger.db import bind_tenant, bind_user
from ledger.intake import is_accepted
from ledger.keys import Principal

PUBLIC_ENDPOINTS = {
    "health.Health",
    "api-docs.openapi_json",
    "docs",
    "docs_assets",
    "metrics",
    "static",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}
MANUAL_WEBHOOK_POLICY = "webhook-manual"


def guard_request() -> None:
    """Authenticate, authorize and rate-limit the request, or answer with a problem."""
    bind_tenant(None)
    bind_user(None)
    if request.endpoint is None:
        return  # 404 and 405 are answered by the error handlers
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint == "console":
        return  # the console signs in with a session of its own (api/console/blueprint.py)
    view = current_app.view_functions[request.endpoint]
    handler = handler_of(view, request.method)
    # A submission's own statement confirms the caller's key (ledger/intake.py): it may
    # take the key from the cache. Every other write looks its key up first.
    submission = getattr(handler, "_submission", None)
    token = wallet_bearer()
    if token is not None:
        # A wallet owner's app: what it may do is the token's, not a key scope's.
        authorize_wallet_token(authenticate_wallet_token(token), request.endpoint, request.method)
    else:
        authenticate_request(confirm=request.method not in READ_METHODS and submission is None)
        authorize(g.principal, required_scope(view, request.method))
    principal: Principal = g.principal
    _limit_rate(principal, handler, submission)
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if request.method in BODY_METHODS and has_body and request.mimetype != "application/json":
        raise ApiProblem(
            415, "unsupported_media_type", "Send the body as Content-Type: application/json."
        )


def add_rate_limit_headers(response: Response) -> Response:
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        response.headers.update(decision.headers())
    return response


def _limit_rate(principal: Principal, handler: Any, submission: str | None) -> None:
    spend_key_budget(principal, replay=submission == SINGLE)
    if getattr(handler, "_rate_policy", None) == MANUAL_WEBHOOK_POLICY:
        spend_manual_webhook_budget(principal)


def spend_key_budget(principal: Principal, *, replay: bool = False) -> None:
    """Count one request against the key's per-second budget, or answer 429; every API
    request and every console page of a signed-in key spends it.

    With `replay`, a request over the limit that replays an accepted reference_id still
    passes, bounded by a budget of its own.
    """
    ctx = tally()
    per_key = Policy(
        "per-key", principal.rate_limit_per_second or ctx.settings.rate_limit_per_second, 1
    )
    decision = g.rate_limit = ctx.limiter.hit(per_key, principal.key_id)
    if decision.allowed:
        return
    # A replay answers a client what it already submitted: never starve it.
    if not (replay and _is_replay(principal)):
        raise too_many(decision)
    replays = Policy("replays", per_key.quota, 1)
    decision = g.rate_limit = ctx.limiter.hit(replays, principal.key_id)
    if not decision.allowed:
        raise too_many(decision)


def spend_manual_webhook_budget(principal: Principal) -> None:
    """Count a manual webhook request (test event, recover, redeliver) against the key's
    tighter budget for them, or answer 429; the API routes and the console share it."""
    ctx = tally()
    manual = Policy(MANUAL_WEBHOOK_POLICY, ctx.settings.webhook_manual_per_minute, 60)
    decision = g.rate_limit = ctx.limiter.hit(manual, principal.key_id)
    if not decision.allowed:
        raise too_many(decision)


def _is_replay(principal: Principal) -> bool:
    """Whether the body names a reference_id the tenant has already had accepted."""
    body = request.get_json(silent=True)
    reference_id = body.get("reference_id") if isinstance(body, dict) else None
    if not isinstance(reference_id, str) or not 0 < len(reference_id) <= 200:
        return False
    with request_connection() as conn:
        return is_accepted(conn, principal.tenant_id, reference_id)


def too_many(decision: Decision) -> ApiProblem:
    return ApiProblem(
        429,
        "rate_limited",
        f"This key has used its {decision.policy.quota} requests per"
        f" {decision.policy.window_seconds} s ({decision.policy.name}); retry after"
        f" {decision.reset_seconds} s.",
        headers={"Retry-After": str(decision.reset_seconds), **decision.headers()},
    )
