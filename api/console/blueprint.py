"""The console's Flask blueprint, and what every console page shares: the sign-in gate,
CSRF, security headers, rendering, and authorization borrowed from the API's own routes."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from api.console.cookies import COOKIE, clear_cookie, tokens_match
from api.context import tally
from api.database import request_unit_of_work
from api.guard import spend_key_budget
from api.permissions import authorize, required_scope
from api.problems import RETRY_AFTER_SECONDS, ApiProblem, ledger_error_status
from ledger.console_sessions import ConsoleSession, find_session
from ledger.db import bind_tenant
from ledger.errors import LedgerError
from ledger.keys import Principal
from ledger.transaction_request import UNSTORABLE

log = logging.getLogger(__name__)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PUBLIC = {"console.login", "console.sign_in", "console.static"}
# Nothing runs but what Tally serves; no script at all; no framing; forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
NOTICES = {
    "frozen": "The wallet is frozen.",
    "unfrozen": "The wallet is active again.",
    "closed": "The wallet is closed.",
    "requeued": "The transaction is queued again.",
    "redelivered": "The delivery is queued to be sent again.",
    "test-sent": "A test event is queued for the endpoint.",
    "enabled": "The endpoint is enabled.",
    "disabled": "The endpoint is disabled.",
    "revoked": "The key is revoked.",
    "token-revoked": "The wallet token is revoked.",
}


def principal() -> Principal:
    signed_in: Principal = g.principal
    return signed_in


def console_session() -> ConsoleSession:
    session: ConsoleSession = g.console_session
    return session


def _unstorable_input() -> str | None:
    """The name of the first query-string, form or path value PostgreSQL cannot store (NUL,
    an unpaired surrogate), if any."""
    named: list[tuple[str, object]] = [
        *request.args.items(multi=True),
        *request.form.items(multi=True),
        *(request.view_args or {}).items(),
    ]
    for name, value in named:
        if UNSTORABLE.search(name) or (isinstance(value, str) and UNSTORABLE.search(value)):
            return UNSTORABLE.sub("", name)
    return None


@bp.before_request
def _gate() -> Response | None:
    """Refuse input the database cannot store; resolve the session cookie (or send the
    browser to sign in); spend the key's rate limit; check CSRF on POST."""
    bind_tenant(None)
    # Before any view, the public ones included: no filter or form reaches a query with
    # text that makes PostgreSQL raise (a 500), whatever page it came from.
    unstorable = _unstorable_input()
    if unstorable is not None:
        return error_page(
            422,
            "invalid_input",
            f"{unstorable}: must not contain NUL characters or unpaired surrogates.",
        )
    if request.endpoint in PUBLIC:
        return None
    token = request.cookies.get(COOKIE)
    session = None
    if token:
        settings = tally().settings
        with request_unit_of_work() as work:
            session = find_session(
                work,
                token,
                idle_seconds=settings.console_idle_seconds,
                max_seconds=settings.console_max_seconds,
            )
    if session is None:
        target = url_for("console.login")
        if request.method == "GET" and request.path != url_for("console.overview"):
            target += "?" + urlencode({"next": request.full_path.rstrip("?")})
        response = redirect(target, 303)
        if token:
            clear_cookie(response, COOKIE)
        return response
    g.console_session = session
    g.principal = session.principal
    bind_tenant(session.principal.tenant_id)
    # A console page costs the key what an API request costs (429 past its limit).
    spend_key_budget(session.principal)
    if request.method == "POST" and not tokens_match(
        session.csrf_token, request.form.get("csrf_token")
    ):
        return error_page(
            403,
            "csrf_token_invalid",
            "This form did not come from this console session (its CSRF token is missing or"
            " wrong). Reload the page and try again.",
        )
    return None


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def allowed(api_endpoint: str, method: str) -> bool:
    """Whether the signed-in key may call this API operation (a route's endpoint name)."""
    view = current_app.view_functions[api_endpoint]
    return principal().scope.allows(required_scope(view, method))


def authorize_as(api_endpoint: str, method: str) -> None:
    """Refuse (403) unless the key may call this API operation: the console's actions are
    authorized by the very declaration on the API route that does the same thing."""
    authorize(principal(), required_scope(current_app.view_functions[api_endpoint], method))


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    notice = NOTICES.get(request.args.get("notice", ""))
    return render_template(f"console/{template}", notice=notice, **context), status


def back_with_notice(endpoint: str, notice: str, **values: Any) -> Response:
    """After an action: 303 to a page, which shows one of NOTICES."""
    return redirect(url_for(endpoint, notice=notice, **values), 303)


def error_page(status: int, code: str, detail: str) -> Response:
    body = render_template("console/error.html", status=status, code=code, detail=detail)
    return Response(body, status, mimetype="text/html")


@bp.errorhandler(ApiProblem)
def _problem(error: ApiProblem) -> Response:
    response = error_page(error.status, error.code, error.detail)
    if "Retry-After" in error.headers:
        response.headers["Retry-After"] = error.headers["Retry-After"]
    return response


@bp.errorhandler(LedgerError)
def _ledger_error(error: LedgerError) -> Response:
    return error_page(ledger_error_status(error), error.code, error.message)


@bp.errorhandler(DBAPIError)
def _database_error(error: DBAPIError) -> Response:
    if isinstance(error, OperationalError) or error.connection_invalidated:
        log.warning("database unavailable: %s", error.orig)
        response = error_page(
            503, "database_unavailable", "The ledger database cannot be reached; retry shortly."
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    log.exception("database error on %s %s", request.method, request.path)
    return error_page(500, "internal_error", "An internal error occurred.")


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return error_page(error.code or 500, "http_error", error.description or error.name)


@bp.app_template_global()
def csrf_token() -> str:
    session: ConsoleSession | None = g.get("console_session")
    return session.csrf_token if session is not None else ""


@bp.app_template_global()
def signed_in() -> Principal | None:
    return g.get("principal") if g.get("console_session") is not None else None


@bp.app_template_global()
def may(api_endpoint: str, method: str) -> bool:
    return g.get("console_session") is not None and allowed(api_endpoint, method)
