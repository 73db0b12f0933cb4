"""The audit trail: who froze, unfroze or closed a wallet, changed an endpoint, made a key."""

from __future__ import annotations

from flask import request

from api.console.blueprint import bp, principal, render
from api.database import request_connection
from ledger import audit
from ledger.errors import InvalidCursor

PAGE_SIZE = 100


@bp.get("/audit")
def audit_events() -> tuple[str, int]:
    errors = []
    try:
        with request_connection() as conn:
            page = audit.list_events(
                conn,
                principal().tenant_id,
                limit=PAGE_SIZE,
                cursor=request.args.get("cursor") or None,
                action=request.args.get("action") or None,
            )
    except InvalidCursor as error:
        errors.append(error.message)
        page = {"events": [], "next_cursor": None}
    return render("audit.html", 400 if errors else 200, page=page, errors=errors)
