"""The browser origins each tenant's wallet tokens may be used from (CORS).

An origin is a scheme (http or https), a host and an optional port, as a browser sends it
in `Origin`: lowercase, without a path, and without the scheme's default port. A
preflight carries no credential, so `allowed_anywhere` asks whether any tenant allows an
origin (a SECURITY DEFINER function answering only yes or no, migration 0014); the
request itself is then held to its own tenant's list (`tenant_allows`).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import InvalidRequest

MAX_ORIGINS = 50
MAX_ORIGIN_LENGTH = 300
DEFAULT_PORTS = {"http": 80, "https": 443}

LIST_ORIGINS = text("SELECT origin FROM cors_origins WHERE tenant_id = :tenant_id ORDER BY origin")
CLEAR_ORIGINS = text("DELETE FROM cors_origins WHERE tenant_id = :tenant_id")
INSERT_ORIGINS = text(
    "INSERT INTO cors_origins (tenant_id, origin)"
    " SELECT :tenant_id, unnest(CAST(:origins AS text[]))"
)
TENANT_ALLOWS = text(
    "SELECT EXISTS (SELECT 1 FROM cors_origins WHERE tenant_id = :tenant_id AND origin = :origin)"
)
ALLOWED_ANYWHERE = text("SELECT tally_origin_allowed(:origin)")


def canonical_origin(value: Any) -> str:
    """The origin as a browser would send it; 422 `invalid_origin` for anything else."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ORIGIN_LENGTH:
        raise _invalid(f"an origin is a string of at most {MAX_ORIGIN_LENGTH} characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _invalid(f"{value!r} is not an origin") from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if (
        scheme not in DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or value.endswith(("?", "#"))
        or any(char.isspace() for char in value)
    ):
        raise _invalid(f"{value!r} is not an origin: scheme://host[:port], nothing more")
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    return f"{scheme}://{shown}"


def replace_origins(
    work: UnitOfWork, tenant_id: uuid.UUID, origins: list[Any], *, actor: Actor
) -> dict[str, Any]:
    """Set the tenant's allowed origins to exactly these; audited."""
    if len(origins) > MAX_ORIGINS:
        raise _invalid(f"at most {MAX_ORIGINS} origins")
    canonical = sorted({canonical_origin(origin) for origin in origins})
    conn = work.connection
    conn.execute(CLEAR_ORIGINS, {"tenant_id": tenant_id})
    if canonical:
        conn.execute(INSERT_ORIGINS, {"tenant_id": tenant_id, "origins": canonical})
    audit.append_event(
        conn, tenant_id, actor, "cors_origins.updated", "cors-origins", {"origins": canonical}
    )
    return {"origins": canonical}


def list_origins(conn: Connection, tenant_id: uuid.UUID) -> dict[str, Any]:
    return {"origins": list(conn.execute(LIST_ORIGINS, {"tenant_id": tenant_id}).scalars())}


def tenant_allows(conn: Connection, tenant_id: uuid.UUID, origin: str) -> bool:
    """Whether the tenant allows the origin (the connection bound to that tenant)."""
    return bool(conn.execute(TENANT_ALLOWS, {"tenant_id": tenant_id, "origin": origin}).scalar())


def allowed_anywhere(conn: Connection, origin: str) -> bool:
    """Whether any tenant allows the origin; for a preflight, which names no tenant."""
    if len(origin) > MAX_ORIGIN_LENGTH:
        return False
    return bool(conn.execute(ALLOWED_ANYWHERE, {"origin": origin}).scalar())


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest("invalid_origin", message, field="origins")
