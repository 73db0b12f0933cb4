"""Transactions: search by any id, user, type, status, code and time; one transaction's
whole story (request, outcome, journal, events, webhook deliveries); requeue a failed one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from api.console.blueprint import authorize_as, back_with_notice, bp, principal, render
from api.database import request_connection, request_unit_of_work
from ledger import queue
from ledger.errors import InvalidCursor
from ledger.queries import transaction_row, transaction_views
from ledger.search import (
    TransactionFilter,
    audit_of,
    search_transactions,
    transaction_entries,
    transaction_events,
)
from ledger.vocabulary import TransactionStatus, TransactionType
from ledger.webhooks.deliveries import transaction_deliveries

PAGE_SIZE = 50


def _moment(name: str, errors: list[str]) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(f"{name}: {raw!r} is not a date and time (YYYY-MM-DDTHH:MM)")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _choice(name: str, choices: list[str], errors: list[str]) -> str | None:
    value = request.args.get(name, "").strip() or None
    if value is not None and value not in choices:
        errors.append(f"{name}: {value!r} is not one of {', '.join(choices)}")
        return None
    return value


@bp.get("/transactions")
def transactions() -> tuple[str, int]:
    errors: list[str] = []
    wanted = TransactionFilter(
        any_id=request.args.get("q", "").strip() or None,
        user_id=request.args.get("user_id", "").strip() or None,
        type=_choice("type", list(TransactionType), errors),
        status=_choice("status", list(TransactionStatus), errors),
        result_code=request.args.get("code", "").strip() or None,
        created_from=_moment("from", errors),
        created_until=_moment("to", errors),
    )
    rows: list[dict[str, Any]] = []
    next_cursor = None
    if not errors:
        try:
            with request_connection() as conn:
                rows, next_cursor = search_transactions(
                    conn,
                    principal().tenant_id,
                    wanted,
                    limit=PAGE_SIZE,
                    cursor=request.args.get("cursor") or None,
                )
        except InvalidCursor as error:
            errors.append(error.message)
    query = {key: value for key, value in request.args.items() if key != "cursor" and value}
    return render(
        "transactions.html",
        400 if errors else 200,
        rows=rows,
        next_cursor=next_cursor,
        query=query,
        errors=errors,
        types=list(TransactionType),
        statuses=list(TransactionStatus),
    )


def _transaction_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        abort(404, f"no transaction {raw}")


@bp.get("/transactions/<transaction_id>")
def transaction(transaction_id: str) -> tuple[str, int]:
    tenant_id = principal().tenant_id
    key = _transaction_id(transaction_id)
    with request_connection() as conn:
        row = transaction_row(conn, tenant_id, transaction_id=key)
        if row is None:
            abort(404, f"no transaction {transaction_id}")
        view = transaction_views(conn, [row])[0]
        story = {
            "entries": transaction_entries(conn, tenant_id, key),
            "events": transaction_events(conn, tenant_id, key),
            "deliveries": transaction_deliveries(conn, tenant_id, key),
            "audit": audit_of(conn, tenant_id, f"transaction:{key}"),
        }
    return render("transaction.html", 200, view=view, row=row, **story)


@bp.post("/transactions/<transaction_id>/requeue")
def requeue_transaction(transaction_id: str) -> Response:
    authorize_as("transactions.Requeue", "POST")
    signed_in = principal()
    with request_unit_of_work() as work:
        queue.requeue_transaction(
            work, signed_in.tenant_id, _transaction_id(transaction_id), actor=signed_in.actor
        )
    return back_with_notice("console.transaction", "requeued", transaction_id=transaction_id)
