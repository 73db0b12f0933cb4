"""The validators' properties seen through the real app: what the schemas and the ledger
refuse is a 422 problem naming the field, never a 500, and what they accept comes back from
PostgreSQL unchanged."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.transaction_request import MAX_METADATA_DEPTH
from tests.integration.api.conftest import Api
from tests.unit.test_validator_properties import (
    IDENTIFIERS,
    JSON_TYPES,
    TRICKY,
    any_char,
    around,
    depth,
    id_char,
    json_values,
    nested,
)

# Each example is a request or two to the app on the test database: few of them. The
# fixtures are per test, not per example, on purpose: one tenant serves every example.
HTTP = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def topup(**changes: Any) -> dict[str, Any]:
    return {
        "type": "topup",
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
        **changes,
    }


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == code
    return response.json


# The fields one POST /transactions topup carries as free text, and their rule.
TEXT_FIELDS = ("user_id", "payment_method", "bonus_type", "item_id", "reason")

http_texts = (
    st.text(any_char, max_size=16)
    | around(128, id_char)
    | st.builds(
        lambda head, char: head + char, st.text(id_char, max_size=4), st.sampled_from(TRICKY)
    )
)


@HTTP
@given(name=st.sampled_from(TEXT_FIELDS), value=http_texts)
@example(name="user_id", value="\u200fعلي\u0301")
@example(name="item_id", value="sku\ud800")
@example(name="reason", value="\x01\x1f\x7f")
def test_text_is_stored_and_read_back_unchanged_or_refused_naming_the_field(api: Api, name, value):
    response = api.post("/transactions", topup(**{name: value}))
    if IDENTIFIERS[name][1](value):
        assert response.status_code == 202, response.data
        assert response.json[name] == value
        stored = api.get(f"/transactions/{response.json['id']}")
        assert stored.status_code == 200
        assert stored.json[name] == value
    else:
        problem = assert_problem(response, 422, "validation_failed")
        assert set(problem["errors"]) == {name}


@HTTP
@given(name=st.sampled_from(sorted(JSON_TYPES)), value=json_values)
def test_a_json_value_of_the_wrong_type_is_a_validation_problem_naming_the_field(
    api: Api, name, value
):
    if JSON_TYPES[name](value):
        return  # the right type: the value properties judge it
    body = topup(type="hold") if name.startswith("expires") else topup()
    problem = assert_problem(
        api.post("/transactions", {**body, name: value}), 422, "validation_failed"
    )
    assert set(problem["errors"]) == {name}


def arrays(levels: int) -> dict[str, Any]:
    """Metadata of `levels` nested arrays under one key: two bytes a level."""
    deep: Any = "leaf"
    for _ in range(levels):
        deep = [deep]
    return {"m": deep}


@HTTP
# orjson parses 1,024 levels: up to there the body reaches the schemas and the ledger.
# Leaves within 64 bits keep the body with orjson: a wider integer sends it to the stdlib
# parser (api/blueprint.py), whose recursion limit stops short of 1,024 levels.
@given(
    metadata=nested(
        st.integers(1, MAX_METADATA_DEPTH + 3) | st.integers(MAX_METADATA_DEPTH + 1, 1_000),
        st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(id_char, max_size=3),
    )
)
@example(metadata=arrays(MAX_METADATA_DEPTH - 1))
@example(metadata=arrays(MAX_METADATA_DEPTH))
@example(metadata=arrays(400))
def test_metadata_nested_too_deep_is_invalid_metadata_not_a_500(api: Api, metadata):
    response = api.post("/transactions", topup(metadata=metadata))
    if depth(metadata) <= MAX_METADATA_DEPTH:
        assert response.status_code == 202, response.data
        stored = api.get(f"/transactions/{response.json['id']}")
        assert stored.json["metadata"] == metadata
    else:
        problem = assert_problem(response, 422, "invalid_metadata")
        assert set(problem["errors"]) == {"metadata"}


def test_a_batch_answers_a_too_deep_item_on_its_own(api: Api):
    items = [topup(), topup(metadata=arrays(500)), topup()]
    response = api.post("/transactions/batch", {"transactions": items})
    assert response.status_code == 200, response.data
    outcomes = [result["outcome"] for result in response.json["results"]]
    assert outcomes == ["accepted", "error", "accepted"]
    assert response.json["results"][1]["error"]["code"] == "invalid_metadata"
