"""Small response helpers shared by the views, and the optional string form of amounts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from flask import Response, has_request_context, request

from ledger.money import MONEY_FIELDS

# Sorted keys: answers read the same from run to run (and as the docs show them).
ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

# `Tally-Amounts: string` (docs/api.md#amounts): for clients whose JSON numbers are
# doubles, money fields travel as decimal strings, both ways.
AMOUNTS_HEADER = "Tally-Amounts"
# A decimal integer as a money field's string form: no sign but '-', no spaces, no
# exponent, no leading zeros; 40 digits at most (MAX_AMOUNT has 39).
DECIMAL_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,39})")
# The WSGI environ key a view sets to have the server send its body chunk by chunk, as the
# body's iterator yields them, instead of all at once (api/server.py).
STREAMED = "tally.streamed"
# Client data, never rewritten: an "amount" inside metadata is the client's own.
OPAQUE_FIELDS = frozenset({"metadata"})


def wants_string_amounts() -> bool:
    """Whether the current request asked for money fields as decimal strings."""
    if not has_request_context():
        return False
    return request.headers.get(AMOUNTS_HEADER, "").strip().lower() == "string"


def amounts_as_strings(value: Any) -> Any:
    """A copy of a JSON value with every integer money field rendered as a decimal string."""
    return _money_fields_mapped(value, _as_string)


def amounts_from_strings(value: Any) -> Any:
    """A copy of a parsed JSON body with every money field given as a decimal string turned
    into an int. Any other string is left as it is, for the schema to refuse by name."""
    return _money_fields_mapped(value, _from_string)


def _as_string(item: Any) -> Any:
    return str(item) if isinstance(item, int) and not isinstance(item, bool) else item


def _from_string(item: Any) -> Any:
    return int(item) if isinstance(item, str) and DECIMAL_INTEGER.fullmatch(item) else item


def _money_fields_mapped(value: Any, convert: Callable[[Any], Any]) -> Any:
    """A copy of a JSON value with `convert` applied to every money field's value, at any
    depth except inside client data (OPAQUE_FIELDS)."""
    if isinstance(value, dict):
        return {
            key: (
                convert(item)
                if key in MONEY_FIELDS
                else item
                if key in OPAQUE_FIELDS
                else _money_fields_mapped(item, convert)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_money_fields_mapped(item, convert) for item in value]
    return value


def render_json(body: Any, *, string_amounts: bool | None = None) -> bytes:
    """JSON bytes of a view's body: orjson (a tenth of the stdlib encoder's cost), falling
    back to the stdlib for what orjson refuses (integers beyond 64 bits), so money stays a
    JSON integer however large. `string_amounts` (by default: what the current request
    asked for) renders money fields as decimal strings."""
    if string_amounts is None:
        string_amounts = wants_string_amounts()
    if string_amounts:
        body = amounts_as_strings(body)
    try:
        return orjson.dumps(body, option=ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
        ).encode()


def _plain(value: Any) -> str:
    """What orjson writes for the few non-JSON types views may hold (datetimes, UUIDs)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response, already rendered (views return the ledger's own JSON shapes)."""
    response = Response(render_json(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
