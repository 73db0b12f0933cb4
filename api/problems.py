"""Every error the API answers is RFC 9457 problem+json with a stable `code`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from api.respond import render_json
from ledger.errors import Conflict, Forbidden, InvalidRequest, KeyRevoked, LedgerError, NotFound

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://tally.dev/problems/"

# Stable codes for the HTTP errors Flask and werkzeug raise on their own.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

RETRY_AFTER_SECONDS = 5


class ApiProblem(Exception):
    """An error a view raises to answer with a given status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    body = problem_body(
        status, code, detail, errors=errors, instance=request.path if request else None
    )
    response = Response(body, status=status, mimetype="application/problem+json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    errors: dict[str, Any] | None = None,
    instance: str | None = None,
) -> bytes:
    """The problem+json document (RFC 9457), rendered; also used outside a Flask request."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    if instance:
        body["instance"] = instance
    return render_json(body)


def _field_errors(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({'json': {...}}); clients want fields."""
    if isinstance(messages, dict) and len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in {"json", "query", "querystring", "view_args", "headers"}:
            return inner if isinstance(inner, dict) else {location: inner}
    return messages if isinstance(messages, dict) else {"_schema": messages}


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if status == 422 and "messages" in data:
        return problem(
            422,
            "validation_failed",
            "The request has invalid fields.",
            errors=_field_errors(data["messages"]),
        )
    if status == 400 and "messages" in data:
        return problem(400, "malformed_json", "The body is not valid JSON.")
    code = HTTP_CODES.get(status, f"http_{status}")
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return problem(status, code, error.description or code, headers=headers)


def ledger_error_status(error: LedgerError) -> int:
    """The HTTP status a ledger error answers with, wherever it is reported."""
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, InvalidRequest):
        return 422
    return 400  # InvalidCursor and any other error in what the caller sent


def ledger_error_fields(error: LedgerError) -> dict[str, Any] | None:
    """Per-field `errors` for a ledger error that names its field."""
    return {error.field: [error.message]} if error.field else None


def from_ledger_error(error: LedgerError) -> Response:
    if isinstance(error, KeyRevoked):
        return problem(
            401,
            "invalid_api_key",
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    status = ledger_error_status(error)
    # A missing thing has no field to blame: the path or id already says which.
    errors = None if status == 404 else ledger_error_fields(error)
    return problem(status, error.code, error.message, errors=errors)


def register_problem_handlers(app: Flask) -> None:
    """Turn every exception into problem+json; never a stack trace, never HTML."""

    @app.errorhandler(ApiProblem)
    def _api_problem(error: ApiProblem) -> Response:
        return problem(
            error.status, error.code, error.detail, errors=error.errors, headers=error.headers
        )

    @app.errorhandler(LedgerError)
    def _ledger(error: LedgerError) -> Response:
        return from_ledger_error(error)

    @app.errorhandler(DBAPIError)
    def _database_error(error: DBAPIError) -> Response:
        if isinstance(error, OperationalError) or error.connection_invalidated:
            log.warning("database unavailable: %s", error.orig)
            return problem(
                503,
                "database_unavailable",
                "The ledger database cannot be reached; retry later.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        log.exception("database error")
        return problem(500, "internal_error", "An internal error occurred.")

    @app.errorhandler(RecursionError)
    def _nested_too_deeply(error: RecursionError) -> Response:
        # The JSON parser gives up on nesting deeper than the interpreter's recursion limit.
        return problem(400, "malformed_json", "The body is not valid JSON or is nested too deeply.")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return from_http_exception(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal_error", "An internal error occurred.")
