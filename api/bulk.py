"""Bulk intake: many submissions in one commit, each validated and answered on its own."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import ValidationError

from api.problems import ApiProblem, ledger_error_fields, ledger_error_status
from api.respond import json_response
from api.submission import accept, request_from_body
from api.transaction_schemas import MAX_BATCH_ITEMS, TransactionSchema
from ledger.errors import LedgerError
from ledger.transaction_request import TransactionRequest

_item_schema = TransactionSchema()


def _error(index: int, status: int, code: str, detail: str, errors: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "detail": detail}
    if errors:
        error["errors"] = errors
    return {"index": index, "status": status, "outcome": "error", "error": error}


def _ledger_error(index: int, error: LedgerError) -> dict[str, Any]:
    status = ledger_error_status(error)
    errors = None if status == 404 else ledger_error_fields(error)
    return _error(index, status, error.code, error.message, errors)


def _parse(index: int, item: Any) -> TransactionRequest | dict[str, Any]:
    """The request one item describes, or the error result that item answers."""
    if not isinstance(item, dict):
        return _error(index, 422, "validation_failed", "Each item must be a JSON object.")
    try:
        body = _item_schema.load(item)
    except ValidationError as invalid:
        return _error(
            index, 422, "validation_failed", "The item has invalid fields.", invalid.messages
        )
    return request_from_body(body["type"], body)


def submit_batch(items: list[Any]) -> Response:
    """Record every valid item in one commit, publish the new ones, answer per item."""
    if len(items) > MAX_BATCH_ITEMS:
        raise ApiProblem(
            413,
            "batch_too_large",
            f"A batch holds at most {MAX_BATCH_ITEMS} transactions; this one has {len(items)}.",
        )
    results: list[dict[str, Any]] = [{} for _ in items]
    requests: list[TransactionRequest] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        parsed = _parse(index, item)
        if isinstance(parsed, TransactionRequest):
            requests.append(parsed)
            positions.append(index)
        else:
            results[index] = parsed
    recorded = accept(requests)
    for index, outcome in zip(positions, recorded, strict=True):
        if isinstance(outcome, LedgerError):
            results[index] = _ledger_error(index, outcome)
            continue
        results[index] = {
            "index": index,
            "status": 200 if outcome.replayed else 202,
            "outcome": "replayed" if outcome.replayed else "accepted",
            "transaction": outcome.transaction,
        }
    counts = {"accepted": 0, "replayed": 0, "error": 0}
    for result in results:
        counts[result["outcome"]] += 1
    body = {
        "accepted": counts["accepted"],
        "replayed": counts["replayed"],
        "errors": counts["error"],
        "results": results,
    }
    return json_response(body)
