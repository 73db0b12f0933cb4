"""Look-alike ids through the app: an id that displays like another is refused at intake, so
no money goes to a second wallet that looks like the first; the OpenAPI document states the
same rule for bodies and paths."""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run

PREFIX = "/api/v1"


def transfer(to_user_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "type": "transfer",
        "user_id": "alice",
        "to_user_id": to_user_id,
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
        **changes,
    }


def wallet_owners(engine: Engine, tenant_id: uuid.UUID) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT owner FROM accounts WHERE tenant_id = :t AND owner NOT LIKE '@%'"),
            {"t": tenant_id},
        )
        return {row.owner for row in rows}


def test_a_transfer_to_an_id_plus_a_soft_hyphen_is_refused_422(api: Api, engine: Engine) -> None:
    run(engine, api.tenant.id, "topup", user_id="alice", amount=1_000)

    response = api.post("/transactions", transfer("alice\u00ad"))

    assert response.status_code == 422, response.data
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "validation_failed"
    assert set(response.json["errors"]) == {"to_user_id"}
    assert "U+00AD" in str(response.json["errors"]["to_user_id"])
    assert wallet_owners(engine, api.tenant.id) == {"alice"}


@pytest.mark.parametrize(
    "look_alike",
    ["alice\u034f", "alice\ufe0f", "alice\U000e0041", "\u3164alice", "al\u180eice"],
    ids=["cgj", "variation-selector", "tag", "hangul-filler", "mongolian-vs-separator"],
)
def test_a_topup_to_an_invisible_variant_is_refused_422(api: Api, look_alike: str) -> None:
    response = api.post("/wallets/topup", _topup(look_alike))

    assert response.status_code == 422, response.data
    assert response.json["code"] == "validation_failed"
    assert set(response.json["errors"]) == {"user_id"}


def test_a_name_in_nfd_is_refused_and_in_nfc_accepted(api: Api) -> None:
    nfc = unicodedata.normalize("NFC", "zoë")

    refused = api.post("/wallets/topup", _topup(unicodedata.normalize("NFD", nfc)))
    accepted = api.post("/wallets/topup", _topup(nfc))

    assert refused.status_code == 422, refused.data
    assert "NFC" in str(refused.json["errors"]["user_id"])
    assert accepted.status_code == 202, accepted.data
    assert accepted.json["user_id"] == nfc


def test_a_reference_id_with_a_bidi_override_is_refused_422(api: Api) -> None:
    response = api.post("/wallets/topup", _topup("alice", reference_id="order-\u202e1"))

    assert response.status_code == 422, response.data
    assert set(response.json["errors"]) == {"reference_id"}


@pytest.mark.parametrize("route", ["balance", "transactions", "holds"])
def test_a_look_alike_in_a_path_is_invalid_user_id(api: Api, route: str) -> None:
    response = api.get(f"/wallets/alice%C2%AD/{route}?asset_code=EUR")

    assert response.status_code == 422, response.data
    assert response.json["code"] == "invalid_user_id"
    assert "U+00AD" in response.json["detail"]


def test_the_document_states_the_user_id_rule_for_bodies_and_paths(api: Api) -> None:
    from ledger.identifiers import user_id_pattern  # here: the other tests predate the module

    document = api.get("/openapi.json").json
    body = document["components"]["schemas"]["Transaction"]["properties"]
    path_parameters = [
        parameter
        for path, item in document["paths"].items()
        if path.startswith(f"{PREFIX}/wallets/{{user_id}}")
        for operation in item.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "path" and parameter["name"] == "user_id"
    ]
    path_parameters += [
        parameter
        for path, item in document["paths"].items()
        if path.startswith(f"{PREFIX}/wallets/{{user_id}}")
        for parameter in item.get("parameters", [])
        if parameter.get("in") == "path" and parameter["name"] == "user_id"
    ]

    assert len({path for path in document["paths"] if "{user_id}" in path}) >= 6
    assert path_parameters
    for schema in [body["user_id"], body["to_user_id"], *(p["schema"] for p in path_parameters)]:
        assert schema["pattern"] == user_id_pattern()
        assert (schema["minLength"], schema["maxLength"]) == (1, 128)
    assert "NFC" in body["user_id"]["description"]
    assert "`..`" in body["user_id"]["description"]
    assert re.fullmatch(body["user_id"]["pattern"], "alice")
    assert "pattern" in body["reference_id"]


def _topup(user_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
        **changes,
    }
