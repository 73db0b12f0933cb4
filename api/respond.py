"""Small response helpers shared by the views."""

from __future__ import annotations

from typing import Any

from flask import Response, json


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response, already rendered (views return the ledger's own JSON shapes)."""
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
