"""Sign in with an API key, sign out."""

from __future__ import annotations

import secrets
import uuid

from flask import redirect, request, url_for
from werkzeug.wrappers import Response

from api.console.blueprint import bp, console_session, error_page, render
from api.console.cookies import COOKIE, LOGIN_COOKIE, clear_cookie, set_cookie, tokens_match
from api.context import tally
from api.database import request_unit_of_work
from api.problems import ApiProblem
from api.rate_limits import Policy
from ledger.console_sessions import end_session, start_session
from ledger.db import bind_tenant
from ledger.keys import authenticate, well_formed_api_key

# Failed sign-ins per client address per minute; past them a wrong key is answered 429
# (keys are 256-bit, so guessing is hopeless anyway: this slows a script down). Successful
# sign-ins are not counted and never refused: a team behind one address is not locked out.
# The address is the client's as the trusted proxies name it (TALLY_TRUSTED_PROXIES).
SIGN_IN_FAILURES = Policy("console-sign-in-failures", 20, 60)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if (
        target
        and target.startswith("/console/")
        and not target.startswith("/console//")
        and not any(character in target for character in "\\\r\n")
    ):
        return target
    return url_for("console.overview")


def _login_form(status: int = 200, error: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    body, status = render(
        "login.html", status, login_token=token, error=error, next=request.values.get("next")
    )
    response = Response(body, status, mimetype="text/html")
    set_cookie(response, LOGIN_COOKIE, token, max_age=3600)
    return response


@bp.get("/login")
def login() -> Response:
    return _login_form()


@bp.post("/login")
def sign_in() -> Response:
    if not tokens_match(request.cookies.get(LOGIN_COOKIE, ""), request.form.get("csrf_token")):
        return error_page(
            403,
            "csrf_token_invalid",
            "The sign-in form is out of date or did not come from this console; reload it.",
        )
    # The key first: a valid key always signs in, however many failures its address has
    # had (a team behind one proxy is never locked out by someone else's typos or script).
    # A key not shaped like an issued one costs no query.
    api_key = request.form.get("api_key", "").strip()
    principal = None
    if well_formed_api_key(api_key):
        with request_unit_of_work() as work:
            principal = authenticate(work, api_key)
    if principal is None:
        limiter = tally().limiter
        address = uuid.uuid5(uuid.NAMESPACE_URL, f"console:{request.remote_addr}")
        failure = limiter.hit(SIGN_IN_FAILURES, address)
        if not failure.allowed:  # this window's failures are used up
            raise ApiProblem(
                429,
                "too_many_sign_in_failures",
                f"Too many failed sign-ins from this address; retry in {failure.reset_seconds} s.",
                headers={"Retry-After": str(failure.reset_seconds)},
            )
        return _login_form(401, "That API key is unknown or revoked.")
    bind_tenant(principal.tenant_id)
    with request_unit_of_work() as work:
        token, _ = start_session(work, principal)
    response = redirect(_safe_next(request.form.get("next")), 303)
    set_cookie(response, COOKIE, token, max_age=tally().settings.console_max_seconds)
    clear_cookie(response, LOGIN_COOKIE)
    return response


@bp.post("/logout")
def sign_out() -> Response:
    session = console_session()
    with request_unit_of_work() as work:
        end_session(work, session.principal.tenant_id, session.token_hash)
    response = redirect(url_for("console.login"), 303)
    clear_cookie(response, COOKIE)
    return response
