"""Console sign-in cookies: the session cookie carries the token of a server-side session
(ledger/console_sessions.py); the sign-in form, which comes before any session, carries a
double-submit token instead (a cookie and a field that must match). Forms of a session
carry its CSRF token."""

from __future__ import annotations

import hmac

from flask import request
from werkzeug.wrappers import Response

COOKIE = "tally_console"
LOGIN_COOKIE = "tally_console_login"
COOKIE_PATH = "/console"


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Whether a form's CSRF token is the one expected; an empty or missing token on either
    side never matches (two absent tokens are not a proof of anything)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )
