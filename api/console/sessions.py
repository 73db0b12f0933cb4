"""Console sign-in: a server-side session per signed-in API key, held in a cookie.

The cookie carries a random token; PostgreSQL keeps its SHA-256, the key that signed in
and the session's CSRF token (migration 0006). A session ends at sign-out, after
`console_idle_seconds` without a request, `console_max_seconds` after sign-in, or as soon
as its key is revoked: `tally_console_session` checks all of it on every request.

Forms carry the session's CSRF token; the sign-in form, which comes before any session,
carries a double-submit token instead (a cookie and a field that must match).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from flask import request
from sqlalchemy import Connection, text
from werkzeug.wrappers import Response

from ledger.tenants import Principal
from ledger.vocabulary import Scope

COOKIE = "tally_console"
LOGIN_COOKIE = "tally_console_login"
COOKIE_PATH = "/console"

CREATE_SESSION = text(
    """
    INSERT INTO console_sessions (token_hash, tenant_id, api_key_id, csrf_token)
    VALUES (:token_hash, :tenant_id, :key_id, :csrf_token)
    """
)
LOOK_UP_SESSION = text(
    "SELECT key_id, tenant_id, scope, prefix, rate_limit_per_second, csrf_token"
    " FROM tally_console_session(:token_hash, :idle, :max)"
)
END_SESSION = text(
    "UPDATE console_sessions SET ended_at = now()"
    " WHERE tenant_id = :tenant_id AND token_hash = :token_hash AND ended_at IS NULL"
)


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    token_hash: str
    csrf_token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start_session(conn: Connection, principal: Principal) -> tuple[str, ConsoleSession]:
    """A new session for a signed-in key (in the caller's tenant-bound transaction): the
    token for the cookie, and the session."""
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(principal, _hash(token), secrets.token_urlsafe(32))
    conn.execute(
        CREATE_SESSION,
        {
            "token_hash": session.token_hash,
            "tenant_id": principal.tenant_id,
            "key_id": principal.key_id,
            "csrf_token": session.csrf_token,
        },
    )
    return token, session


def find_session(
    conn: Connection, token: str, *, idle_seconds: int, max_seconds: int
) -> ConsoleSession | None:
    """The live session of a cookie's token (and it is marked as seen), or None."""
    row = conn.execute(
        LOOK_UP_SESSION, {"token_hash": _hash(token), "idle": idle_seconds, "max": max_seconds}
    ).first()
    if row is None:
        return None
    principal = Principal(
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        scope=Scope(row.scope),
        prefix=row.prefix,
        rate_limit_per_second=row.rate_limit_per_second,
    )
    return ConsoleSession(principal, _hash(token), row.csrf_token)


def end_session(conn: Connection, tenant_id: uuid.UUID, token_hash: str) -> None:
    conn.execute(END_SESSION, {"tenant_id": tenant_id, "token_hash": token_hash})


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
