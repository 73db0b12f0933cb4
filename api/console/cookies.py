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


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


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
