"""Small response helpers shared by the views."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response

# Sorted keys: answers read the same from run to run (and as the docs show them).
ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def render_json(body: Any) -> bytes:
    """JSON bytes of a view's body: orjson (a tenth of the stdlib encoder's cost), falling
    back to the stdlib for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(body, option=ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(body, sort_keys=True, default=str).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response, already rendered (views return the ledger's own JSON shapes)."""
    response = Response(render_json(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
