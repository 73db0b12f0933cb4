"""Operator console sessions: one per signed-in API key, kept in PostgreSQL.

The browser holds a random token; the table keeps its SHA-256, the key that signed in and
the session's CSRF token (migration 0006). A session ends at sign-out, after
`idle_seconds` without a request, `max_seconds` after sign-in, or as soon as its key is
revoked: `tally_console_session` checks all of it on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import text

from ledger.db import UnitOfWork
from ledger.keys import Principal, principal_from_row

CREATE_SESSION = text(
    """
    INSERT INTO console_sessions (token_hash, tenant_id, api_key_id, csrf_token)
    VALUES (:token_hash, :tenant_id, :key_id, :csrf_token)
    """
)
# Marks the session as seen, so it is a write.
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


def start_session(work: UnitOfWork, principal: Principal) -> tuple[str, ConsoleSession]:
    """A new session for a signed-in key (in a unit of work bound to its tenant): the token
    for the browser, and the session."""
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(principal, _hash(token), secrets.token_urlsafe(32))
    work.connection.execute(
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
    work: UnitOfWork, token: str, *, idle_seconds: int, max_seconds: int
) -> ConsoleSession | None:
    """The live session of a browser's token (and it is marked as seen), or None."""
    row = work.connection.execute(
        LOOK_UP_SESSION, {"token_hash": _hash(token), "idle": idle_seconds, "max": max_seconds}
    ).first()
    if row is None:
        return None
    return ConsoleSession(principal_from_row(row), _hash(token), row.csrf_token)


def end_session(work: UnitOfWork, tenant_id: uuid.UUID, token_hash: str) -> None:
    """Sign a session out."""
    work.connection.execute(END_SESSION, {"tenant_id": tenant_id, "token_hash": token_hash})
