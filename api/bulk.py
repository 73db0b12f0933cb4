"""Bulk intake: many submissions in one commit, each validated and answered on its own."""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Response
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError

from api.auth import current_principal
from api.context import tally
from api.database import request_transaction
from api.problems import ApiProblem
from api.respond import json_response
from api.schemas import MAX_BATCH_ITEMS, TransactionSchema
from api.submission import request_from_body
from ledger.db import RETRYABLE_SQLSTATES, sqlstate
from ledger.errors import Conflict, LedgerError, NotFound
from ledger.intake import Submission, submit_transactions
from ledger.transaction_request import TransactionRequest

# Two batches naming the same new reference ids in opposite orders can deadlock on the
# unique index; PostgreSQL aborts one of them, and it is safe to run again.
MAX_INTAKE_ATTEMPTS = 3

_item_schema = TransactionSchema()


def _error(index: int, status: int, code: str, detail: str, errors: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "detail": detail}
    if errors:
        error["errors"] = errors
    return {"index": index, "status": status, "outcome": "error", "error": error}


def _ledger_error(index: int, error: LedgerError) -> dict[str, Any]:
    status = 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 422
    errors = {error.field: [error.message]} if error.field else None
    return _error(index, status, error.code, error.message, errors)


def _parse(index: int, item: Any, is_admin: bool) -> Any:
    """The validated request of one item, or the error result that item answers."""
    if not isinstance(item, dict):
        return _error(index, 422, "validation_failed", "Each item must be a JSON object.")
    try:
        body = _item_schema.load(item)
    except ValidationError as invalid:
        return _error(
            index, 422, "validation_failed", "The item has invalid fields.", invalid.messages
        )
    if body["type"] == "adjustment" and not is_admin:
        return _error(index, 403, "admin_key_required", "Adjustments need an admin API key.")
    return request_from_body(body["type"], body)


def _record(requests: list[TransactionRequest]) -> list[Submission | LedgerError]:
    ctx = tally()
    tenant_id = current_principal().tenant_id
    for attempt in range(MAX_INTAKE_ATTEMPTS):
        try:
            with request_transaction() as conn:
                return submit_transactions(
                    conn, tenant_id, requests, max_metadata_bytes=ctx.settings.max_metadata_bytes
                )
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == MAX_INTAKE_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def submit_batch(items: list[Any]) -> Response:
    """Record every valid item in one commit, publish the new ones, answer per item."""
    if len(items) > MAX_BATCH_ITEMS:
        raise ApiProblem(
            413,
            "batch_too_large",
            f"A batch holds at most {MAX_BATCH_ITEMS} transactions; this one has {len(items)}.",
        )
    ctx = tally()
    principal = current_principal()
    results: list[dict[str, Any]] = [{} for _ in items]
    requests: list[TransactionRequest] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        parsed = _parse(index, item, principal.is_admin)
        if isinstance(parsed, TransactionRequest):
            requests.append(parsed)
            positions.append(index)
        else:
            results[index] = parsed
    recorded = _record(requests) if requests else []
    new_ids: list[str] = []
    for index, outcome in zip(positions, recorded, strict=True):
        if isinstance(outcome, LedgerError):
            results[index] = _ledger_error(index, outcome)
            continue
        if not outcome.replayed:
            new_ids.append(outcome.transaction["id"])
        results[index] = {
            "index": index,
            "status": 200 if outcome.replayed else 202,
            "outcome": "replayed" if outcome.replayed else "accepted",
            "transaction": outcome.transaction,
        }
    # After the commit, in chunks: one message per worker batch, not one per transaction.
    chunk = max(1, ctx.settings.batch_size)
    for start in range(0, len(new_ids), chunk):
        ctx.publisher.publish(new_ids[start : start + chunk])
    replayed = sum(1 for result in results if result["outcome"] == "replayed")
    body = {
        "accepted": len(new_ids),
        "replayed": replayed,
        "errors": len(items) - len(new_ids) - replayed,
        "results": results,
    }
    return json_response(body)
