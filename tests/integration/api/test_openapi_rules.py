"""The OpenAPI document states the rules the API enforces, in JSON Schema that generators
and other languages' regex engines (ECMA-262) read as Python's `re` does; routing answers
`OPTIONS` with the methods the document lists for the path."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from ledger.identifiers import ROUTE_WORDS
from ledger.money import MAX_AMOUNT
from ledger.pagination import encode_cursor
from ledger.vocabulary import TransactionType

PREFIX = "/api/v1"
UUID_PATH_PARAMETERS = {"transaction_id", "endpoint_id", "delivery_id", "key_id"}
# Their patterns are being rewritten in ledger/identifiers.py on another branch.
# Python-only syntax, or syntax ECMA-262 reads otherwise (without the `u` flag).
NOT_ECMA = [
    (re.compile(r"\(\?P[<=]"), "named group in Python syntax"),
    (re.compile(r"\(\?[aiLmsux-]+[:)]"), "inline flags"),
    (re.compile(r"\(\?[>#]"), "atomic group or comment"),
    (re.compile(r"\\[AZzGhHNpPU]"), "escape ECMA-262 lacks or reads otherwise"),
    (re.compile(r"\\x"), "\\x escape"),
    (re.compile(r"[*+?}]\+"), "possessive quantifier"),
    (re.compile(r"\\u(?![0-9A-Fa-f]{4})"), "\\u not followed by four hex digits"),
    (re.compile(r"\\u[Dd][89A-Fa-f][0-9A-Fa-f]{2}"), "surrogate escape"),
]


@pytest.fixture(scope="module")
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the document with its JSON path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _patterns(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (path, node["pattern"])
        for path, node in _walk(document)
        if isinstance(node.get("pattern"), str)
    ]


def _parameters(document: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for route, item in document["paths"].items():
        operations = [item, *(op for key, op in item.items() if key != "parameters")]
        for operation in operations:
            for parameter in operation.get("parameters", []):
                if parameter["name"] == name:
                    found.append((route, parameter["schema"]))
    return found


def test_every_id_in_a_path_is_declared_a_uuid(document):
    declared = {
        parameter["name"]: parameter["schema"]
        for item in document["paths"].values()
        for parameter in item.get("parameters", [])
        if parameter["in"] == "path" and parameter["name"].endswith("_id")
    }
    for name in UUID_PATH_PARAMETERS:
        assert declared[name] == {"type": "string", "format": "uuid"}, name


def test_a_transaction_id_that_is_no_uuid_is_the_documented_404(api, document):
    documented = document["paths"]["/api/v1/transactions/{transaction_id}"]["get"]["responses"]
    response = api.get("/transactions/not-a-uuid")
    assert response.status_code == 404
    assert response.get_json()["code"] in documented["404"]["x-problem-codes"]


def test_every_cursor_declares_the_codecs_alphabet_and_a_length(document):
    cursors = _parameters(document, "cursor")
    assert len(cursors) == 7
    issued = encode_cursor("v1:12345678901234567890|" + str(uuid.uuid4()))
    for route, schema in cursors:
        assert schema["pattern"] == "^[A-Za-z0-9_-]*$", route
        assert schema["maxLength"] >= 200, route
        assert re.fullmatch(schema["pattern"], issued), route
        assert not re.fullmatch(schema["pattern"], "bad!"), route


def test_every_asset_code_declares_its_pattern(document):
    schemas = document["components"]["schemas"]
    codes = [schemas["Asset"]["properties"]["code"]] + [
        schema for _, schema in _parameters(document, "asset_code")
    ]
    codes += [
        schema["properties"]["asset_code"]
        for schema in schemas.values()
        if "asset_code" in schema.get("properties", {})
        and "pattern" in schema["properties"]["asset_code"]
    ]
    assert len(codes) >= 5
    for schema in codes:
        pattern = schema["pattern"]
        assert re.fullmatch(pattern, "GOLD_COINS") and re.fullmatch(pattern, "EUR")
        assert not re.fullmatch(pattern, "eur") and not re.fullmatch(pattern, "A" * 33)


def test_amounts_declare_the_bounds_the_validator_enforces(document):
    schemas = document["components"]["schemas"]
    for name in ("Topup", "Bonus", "Spend"):
        amount = schemas[name]["properties"]["amount"]
        assert (amount["minimum"], amount["maximum"]) == (1, MAX_AMOUNT), name
    signed = schemas["Transaction"]["properties"]["amount"]
    assert (signed["minimum"], signed["maximum"]) == (-MAX_AMOUNT, MAX_AMOUNT)
    assert signed["not"] == {"enum": [0]}
    # Negative only for an adjustment: every other type is held to a minimum of 1.
    positive_rules = [
        rule["anyOf"]
        for rule in schemas["Transaction"]["allOf"]
        if {"properties": {"amount": {"minimum": 1}}} in rule["anyOf"]
    ]
    assert len(positive_rules) == 1
    excepted = positive_rules[0][0]["properties"]["type"]["not"]["enum"]
    assert TransactionType.ADJUSTMENT not in excepted
    assert set(excepted) == set(TransactionType) - {TransactionType.ADJUSTMENT}


def test_every_pattern_compiles_and_is_ecma_262_syntax(document):
    """User-id patterns included: they are built for ECMA-262's `u` flag (ledger/identifiers.py)."""
    patterns = list(_patterns(document))
    assert len(patterns) >= 10
    assert any("user_id" in path for path, _ in patterns)
    for path, pattern in patterns:
        re.compile(pattern)
        for syntax, what in NOT_ECMA:
            assert not syntax.search(pattern), f"{path}: {what} in {pattern!r}"


@pytest.mark.parametrize(
    "path",
    ["/transactions/batch", "/wallets/topup", f"/transactions/{uuid.uuid4()}/requeue"],
)
def test_options_on_a_post_only_route_lists_only_post(api, path):
    response = api.request("OPTIONS", path)
    assert response.status_code == 200
    assert set(response.allow) == {"POST", "OPTIONS"}


def test_a_method_a_concrete_path_does_not_serve_is_405_even_where_a_template_would(api):
    response = api.request("PATCH", "/wallets/topup", json={"asset_code": "EUR"})
    assert response.status_code == 405
    assert set(response.allow) == {"POST", "OPTIONS"}
    assert response.get_json()["code"] == "method_not_allowed"


def test_every_word_the_wallet_routes_spell_is_refused_as_a_user_id(app):
    """A literal segment under /wallets/ (a submission route) would hide a wallet of that
    name from PATCH /wallets/{user_id}: the user-id rule refuses each one."""
    literal = {
        rule.rule.removeprefix(f"{PREFIX}/wallets/")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(f"{PREFIX}/wallets/") and "<" not in rule.rule
    }
    assert literal == set(ROUTE_WORDS)


def test_the_reference_id_lookup_declares_that_nul_is_refused(document):
    """The lookup takes any stored reference id, so its only rule is the database's: no NUL
    (a schema-valid NUL was refused 422 while the document said nothing)."""
    [schema] = [
        schema
        for route, schema in _parameters(document, "reference_id")
        if route == f"{PREFIX}/transactions"
    ]
    assert re.fullmatch(schema["pattern"], "order-1\u200b")
    assert not re.fullmatch(schema["pattern"], "order\x00")
