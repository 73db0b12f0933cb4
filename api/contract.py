"""How errors and authentication appear in the OpenAPI document.

Every error the API answers is RFC 9457 problem+json (see api/problems.py). The document
says so per operation: each status the operation can answer, with its stable codes. The
statuses every operation of a kind shares are added here, from what the operation is
(authenticated, taking a JSON body, taking arguments); a view declares only its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_instance
from marshmallow import fields

from api.permissions import REFUSALS
from api.schemas import ProblemSchema
from ledger.vocabulary import Scope

PROBLEM_JSON = "application/problem+json"
BEARER_AUTH = "bearerAuth"

# Authentication reads the key (or the wallet token) from the database: any authenticated
# operation can find it unreachable. A wallet token (api/wallet_token_auth.py) may be sent
# to any of them, and is refused with a code of its own, or 403 `token_scope` where it
# may not go, or `origin_not_allowed` from a browser page its tenant does not allow.
WALLET_TOKEN_REFUSALS = (
    "invalid_wallet_token",
    "token_expired",
    "token_not_yet_valid",
    "token_revoked",
)
AUTHENTICATED: dict[int, tuple[str, ...]] = {
    401: ("missing_api_key", "invalid_authorization", "invalid_api_key", *WALLET_TOKEN_REFUSALS),
    403: ("token_scope", "origin_not_allowed"),
    429: ("rate_limited", "too_many_auth_failures"),
    503: ("database_unavailable",),
}
# What a wallet token's spend or hold may answer beyond any submission's: another user's
# wallet, as if absent, and the token's limits.
WALLET_TOKEN_SUBMISSION: dict[int, tuple[str, ...]] = {
    404: ("wallet_not_found",),
    422: ("over_max_amount", "over_spend_limit"),
}
# The request guard refuses any non-JSON body on these methods, before the view runs.
BODY_METHODS = frozenset({"post", "put", "patch"})
NON_JSON_BODY: dict[int, tuple[str, ...]] = {415: ("unsupported_media_type",)}
JSON_BODY: dict[int, tuple[str, ...]] = {
    400: ("malformed_json",),
    413: ("body_too_large",),
}
ARGUMENTS: dict[int, tuple[str, ...]] = {422: ("validation_failed",)}
# What a submission that splits answers: a fault of its legs' shape (ledger/request_legs.py),
# or a leg naming a system account the tenant does not have (intake).
SPLIT_PROBLEMS = ("invalid_splits", "unknown_system_account")
# And one of any type: also a journal's postings, an exchange buying the asset it sells,
# and an asset other than `asset_code` (an exchange's, a posting's) the tenant does not have.
MONEY_MOVE_PROBLEMS = (*SPLIT_PROBLEMS, "invalid_postings", "same_asset", "unknown_asset")
# What any submission's `effective_at` may answer (ledger time).
DATED = ("invalid_effective_at", "effective_at_in_future", "effective_at_too_old", "period_closed")

HEADERS: dict[str, dict[str, Any]] = {
    "Location": {
        "description": "Where to follow the transaction: its `GET /transactions/{id}`.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "The `reference_id` was seen before with this body: this is that answer.",
        "required": True,
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {
        "description": "The Bearer challenge.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Policy": {
        "description": "The key's quota policy (draft-ietf-httpapi-ratelimit-headers):"
        ' `"<name>";q=<requests>;w=<seconds>`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "What is left of the quota in this window:"
        ' `"<name>";r=<remaining>;t=<seconds to reset>`.',
        "required": True,
        "schema": {"type": "string"},
    },
}
PROBLEM_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": "WWW-Authenticate"},
    429: {
        "Retry-After": "Retry-After",
        "RateLimit-Policy": "RateLimit-Policy",
        "RateLimit": "RateLimit",
    },
    503: {"Retry-After": "Retry-After"},
}


# apispec writes a nullable nested schema for OpenAPI 3.0 as `anyOf: [<ref>, ANY_OBJECT]`,
# whose second branch takes any object at all; with `enum: [null]` it takes only null.
ANY_OBJECT = {"type": "object", "nullable": True}


def _null_or_reference(
    converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    if not field.allow_none or "anyOf" not in ret:
        return {}
    branches = [{**b, "enum": [None]} if b == ANY_OBJECT else b for b in ret["anyOf"]]
    return {"anyOf": branches}


def _with_schema_rules(schema2jsonschema: Callable[[Any], dict[str, Any]]) -> Any:
    """A schema's rules across its fields (`Meta.json_schema_rules`, JSON Schema keywords
    such as `minProperties` or `allOf`) join its document, as its field rules do."""

    def convert(schema: Any) -> dict[str, Any]:
        jsonschema = schema2jsonschema(schema)
        meta = getattr(resolve_schema_instance(schema), "Meta", None)
        return {**jsonschema, **getattr(meta, "json_schema_rules", {})}

    convert.with_schema_rules = True  # type: ignore[attr-defined]
    return convert


def prepare_document(spec: APISpec, marshmallow_plugin: MarshmallowPlugin) -> None:
    """Once per document: exact nullable references, schema-wide rules, the bearer scheme,
    shared headers."""
    converter = marshmallow_plugin.converter
    assert converter is not None, "the marshmallow plugin is initialised with the spec"
    if not hasattr(converter, _null_or_reference.__name__):
        converter.add_attribute_function(_null_or_reference)
    if not getattr(converter.schema2jsonschema, "with_schema_rules", False):
        converter.schema2jsonschema = _with_schema_rules(converter.schema2jsonschema)  # type: ignore[method-assign]
    components = spec.components
    if BEARER_AUTH not in components.security_schemes:
        components.security_scheme(
            BEARER_AUTH,
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A tenant's API key: `Authorization: Bearer <api key>`.",
            },
        )
    for name, header in HEADERS.items():
        if name not in components.headers:
            components.header(name, header)


def problem_response(status: int, codes: Iterable[str]) -> dict[str, Any]:
    """The problem+json response of one status, naming the codes it carries."""
    unique = list(dict.fromkeys(codes))
    listed = ", ".join(f"`{code}`" for code in unique)
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}: problem `code` {listed}.",
        "content": {PROBLEM_JSON: {"schema": ProblemSchema}},
        # The same codes for programs: a client (and the contract test) can check them.
        "x-problem-codes": unique,
    }
    if status in PROBLEM_HEADERS:
        response["headers"] = dict(PROBLEM_HEADERS[status])
    return response


def default_response() -> dict[str, Any]:
    """What the document promises for a status it does not list: still problem+json."""
    return {
        "description": "Any other error, such as 500 `internal_error`.",
        "content": {PROBLEM_JSON: {"schema": ProblemSchema}},
    }


def operation_problems(
    *,
    method: str,
    authenticated: bool,
    json_body: bool,
    arguments: bool,
    declared: Mapping[int, Iterable[str]],
    scope: Scope = Scope.READ,
) -> dict[int, list[str]]:
    """Every error status of an operation and its codes: the shared ones, then the view's."""
    shared: list[Mapping[int, tuple[str, ...]]] = []
    if authenticated:
        shared.append(AUTHENTICATED)
        if scope != Scope.READ:
            shared.append({403: (REFUSALS[scope],)})
    if method in BODY_METHODS:
        shared.append(NON_JSON_BODY)
    if json_body:
        shared.append(JSON_BODY)
    if arguments:
        shared.append(ARGUMENTS)
    problems: dict[int, list[str]] = {}
    for source in (*shared, declared):
        for status, codes in source.items():
            problems.setdefault(status, []).extend(codes)
    return dict(sorted(problems.items()))
