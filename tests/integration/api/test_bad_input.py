"""Every malformed, unauthorised or conflicting request gets its status and a stable problem code.

One row per kind of bad input. Whatever the input, the answer is application/problem+json:
never a 500, never HTML.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from werkzeug.test import TestResponse

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.keys import issue_api_key, revoke_api_keys_matching
from ledger.tenants import create_tenant
from tests.integration.api.conftest import NO_KEY, Api

MISSING = object()


def topup(**changes: Any) -> dict[str, Any]:
    """A valid top-up body with a fresh reference id; `field=MISSING` drops a field."""
    body = {
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": 100,
        "reference_id": uuid.uuid4().hex,
        **changes,
    }
    return {name: value for name, value in body.items() if value is not MISSING}


def transaction(type: str, **changes: Any) -> dict[str, Any]:
    return topup(type=type, **changes)


def hold(**changes: Any) -> dict[str, Any]:
    return transaction("hold", **changes)


def settle(type: str, **changes: Any) -> dict[str, Any]:
    """A valid capture or void body naming some hold (its fate is the ledger's to judge)."""
    body = {
        "type": type,
        "reference_id": uuid.uuid4().hex,
        "original_transaction_id": str(uuid.uuid4()),
        **changes,
    }
    return {name: value for name, value in body.items() if value is not MISSING}


def from_now(**delta: float) -> str:
    """An aware timestamp `delta` away from now, as JSON sends it."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def revoked_key(api: Api) -> str:
    """An API key of this tenant that worked once and has been revoked."""
    with unit_of_work(api.engine) as work:
        key = issue_api_key(work, api.tenant.id, "write")["api_key"]
    assert api.post("/wallets/topup", topup()).status_code == 202  # sanity: keys work
    assert api.post("/wallets/topup", topup(), key=key).status_code == 202
    with unit_of_work(api.engine) as work:
        assert revoke_api_keys_matching(work, key) == 1
    return key


def reuse_reference_with_another_body(api: Api) -> TestResponse:
    body = topup()
    assert api.post("/wallets/topup", body).status_code == 202
    return api.post("/wallets/topup", {**body, "amount": body["amount"] + 1})


def another_tenants_transaction(api: Api) -> TestResponse:
    with unit_of_work(api.engine) as work:
        other = create_tenant(work, f"other-{uuid.uuid4().hex[:8]}")
        other_key = issue_api_key(work, other, "write")["api_key"]
        create_asset(work, other, "EUR", "Euro", 2)
    submitted = api.post("/wallets/topup", topup(), key=other_key)
    assert submitted.status_code == 202, submitted.get_data(as_text=True)
    transaction_id = submitted.get_json()["id"]
    assert api.get(f"/transactions/{transaction_id}", key=other_key).status_code == 200
    return api.get(f"/transactions/{transaction_id}")


Call = Callable[[Api], TestResponse]


def row(call: Call, status: int, code: str, id: str) -> Any:
    return pytest.param(call, status, code, id=id)


BAD_REQUESTS = [
    # Shape of the body
    row(lambda a: a.post("/wallets/topup", topup(amount=MISSING)), 422, "validation_failed",
        "missing-amount"),
    row(lambda a: a.post("/wallets/topup", topup(reference_id=MISSING)), 422, "validation_failed",
        "missing-reference-id"),
    row(lambda a: a.post("/wallets/topup", topup(colour="blue")), 422, "validation_failed",
        "unknown-field"),
    row(lambda a: a.post("/wallets/topup", [topup()]), 422, "validation_failed", "array-body"),
    row(lambda a: a.post("/wallets/topup", topup(amount="100")), 422, "validation_failed",
        "string-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=1.5)), 422, "validation_failed",
        "fractional-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=1.0)), 422, "validation_failed",
        "float-amount-with-integral-value"),
    row(lambda a: a.post("/wallets/topup", topup(amount=True)), 422, "validation_failed",
        "boolean-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=None)), 422, "validation_failed",
        "null-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=0)), 422, "validation_failed",
        "zero-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=-5)), 422, "validation_failed",
        "negative-amount"),
    row(lambda a: a.post("/wallets/topup", topup(amount=2**127)), 422, "validation_failed",
        "amount-beyond-2**127-1"),
    row(lambda a: a.post("/wallets/topup", topup(amount=2**200)), 422, "validation_failed",
        "amount-far-beyond-the-ceiling"),
    row(lambda a: a.post("/wallets/topup", topup(amount=2.0**70)), 422, "validation_failed",
        "wide-float-amount"),
    row(lambda a: a.post("/transactions", transaction("spend", amount=-5)), 422,
        "validation_failed", "negative-amount-on-general-route"),
    row(lambda a: a.post("/wallets/topup", topup(user_id="al ice")), 422, "validation_failed",
        "user-id-with-space"),
    row(lambda a: a.post("/wallets/topup", topup(user_id="alice\n")), 422, "validation_failed",
        "user-id-with-trailing-newline"),
    row(lambda a: a.post("/wallets/topup", topup(asset_code="EUR\n")), 422, "validation_failed",
        "asset-code-with-trailing-newline"),
    row(lambda a: a.post("/wallets/topup", topup(user_id="@topup")), 422, "validation_failed",
        "user-id-of-a-system-account"),
    row(lambda a: a.post("/wallets/topup", topup(asset_code="eur")), 422, "validation_failed",
        "lower-case-asset-code"),
    row(lambda a: a.post("/wallets/topup", topup(asset_code="USD")), 404, "asset_not_found",
        "unknown-asset"),
    row(lambda a: a.post("/wallets/topup", topup(metadata={"note": "x" * 4100})), 422,
        "metadata_too_large", "oversized-metadata"),
    row(lambda a: a.post("/wallets/topup", topup(metadata=["not", "an", "object"])), 422,
        "validation_failed", "metadata-not-an-object"),
    row(lambda a: a.post("/wallets/topup", topup(metadata={"k": "\x00"})), 422,
        "invalid_metadata", "nul-in-metadata"),
    row(lambda a: a.post("/wallets/topup", topup(reference_id="r\x00")), 422,
        "validation_failed", "nul-in-reference-id"),
    row(lambda a: a.post("/wallets/topup", topup(user_id="\ud800")), 422,
        "validation_failed", "unpaired-surrogate-in-user-id"),
    row(lambda a: a.post("/wallets/topup", topup(metadata={"note": "\udc00"})), 422,
        "invalid_metadata", "unpaired-surrogate-in-metadata"),
    row(lambda a: a.post("/transactions", transaction("lend")), 422, "validation_failed",
        "unknown-type"),
    row(lambda a: a.post("/transactions", transaction("refund", original_transaction_id="abc")),
        422, "validation_failed", "bad-original-transaction-id"),
    row(lambda a: a.post("/transactions", transaction("refund")), 422, "missing_field",
        "refund-without-original"),
    row(lambda a: a.post("/transactions", transaction("transfer", to_user_id="alice")), 422,
        "same_wallet", "transfer-to-self"),
    row(lambda a: a.post("/transactions", transaction("transfer")), 422, "invalid_user_id",
        "transfer-without-target"),
    row(lambda a: a.post("/transactions", transaction("adjustment"),
                         key=a.tenant.admin_api_key), 422, "missing_field",
        "adjustment-without-reason"),
    # Holds, captures and voids
    row(lambda a: a.post("/transactions", hold(expires_in=0)), 422, "validation_failed",
        "hold-expiring-in-0-seconds"),
    row(lambda a: a.post("/transactions", hold(expires_in=30 * 86_400 + 1)), 422,
        "validation_failed", "hold-expiring-after-30-days"),
    row(lambda a: a.post("/transactions", hold(expires_in="60")), 422, "validation_failed",
        "string-expires-in"),
    row(lambda a: a.post("/transactions", hold(expires_in=True)), 422, "validation_failed",
        "boolean-expires-in"),
    row(lambda a: a.post("/transactions", hold(expires_in=60.0)), 422, "validation_failed",
        "float-expires-in"),
    row(lambda a: a.post("/transactions", hold(expires_in=None)), 422, "validation_failed",
        "null-expires-in"),
    row(lambda a: a.post("/transactions", hold(expires_at=from_now(days=1)[:19])), 422,
        "validation_failed", "naive-expires-at"),
    row(lambda a: a.post("/transactions", hold(expires_at="tomorrow")), 422,
        "validation_failed", "expires-at-not-a-date-time"),
    row(lambda a: a.post("/transactions", hold(expires_at=from_now(seconds=-60))), 422,
        "invalid_expiry", "expires-at-in-the-past"),
    row(lambda a: a.post("/transactions", hold(expires_at=from_now(days=30, seconds=60))), 422,
        "invalid_expiry", "expires-at-after-30-days"),
    row(lambda a: a.post("/transactions", hold(expires_in=60, expires_at=from_now(days=1))), 422,
        "invalid_expiry", "both-expires-in-and-expires-at"),
    row(lambda a: a.post("/transactions", hold(to_user_id="alice")), 422, "same_wallet",
        "hold-paying-to-its-own-wallet"),
    row(lambda a: a.post("/transactions", hold(to_user_id="@revenue")), 422,
        "validation_failed", "hold-paying-to-a-system-account"),
    row(lambda a: a.post("/transactions", hold(amount=MISSING)), 422, "validation_failed",
        "hold-without-amount"),
    row(lambda a: a.post("/transactions", hold(user_id=MISSING)), 422, "validation_failed",
        "hold-without-user-id"),
    row(lambda a: a.post("/transactions", hold(original_transaction_id=str(uuid.uuid4()))), 422,
        "unexpected_field", "hold-naming-an-original"),
    row(lambda a: a.post("/transactions", settle("capture", original_transaction_id=MISSING)),
        422, "missing_field", "capture-without-hold"),
    row(lambda a: a.post("/transactions", settle("void", original_transaction_id=MISSING)),
        422, "missing_field", "void-without-hold"),
    row(lambda a: a.post("/transactions", settle("capture", original_transaction_id="abc")),
        422, "validation_failed", "capture-of-a-bad-uuid"),
    row(lambda a: a.post("/transactions", settle("capture", user_id="alice")), 422,
        "unexpected_field", "capture-with-user-id"),
    row(lambda a: a.post("/transactions", settle("capture", asset_code="EUR")), 422,
        "unexpected_field", "capture-with-asset-code"),
    row(lambda a: a.post("/transactions", settle("capture", to_user_id="bob")), 422,
        "unexpected_field", "capture-with-to-user-id"),
    row(lambda a: a.post("/transactions", settle("void", amount=100)), 422, "unexpected_field",
        "void-with-amount"),
    row(lambda a: a.post("/transactions", settle("void", expires_in=60)), 422,
        "unexpected_field", "void-with-expires-in"),
    row(lambda a: a.post("/transactions", settle("capture", amount=0)), 422,
        "validation_failed", "capture-of-zero"),
    row(lambda a: a.post("/transactions", settle("capture", amount=-5)), 422,
        "validation_failed", "capture-of-a-negative-amount"),
    row(lambda a: a.post("/transactions", settle("capture", amount="5")), 422,
        "validation_failed", "capture-of-a-string-amount"),
    row(lambda a: a.post("/transactions", transaction("spend", expires_in=60)), 422,
        "unexpected_field", "expires-in-on-a-spend"),
    row(lambda a: a.post("/transactions", transaction("topup", expires_at=from_now(days=1))),
        422, "unexpected_field", "expires-at-on-a-topup"),
    row(lambda a: a.post("/wallets/spend", topup(expires_in=60)), 422, "validation_failed",
        "expires-in-on-the-spend-route"),
    # Encoding of the body
    row(lambda a: a.request("POST", "/wallets/topup", data=b'{"user_id": "alice",',
                            content_type="application/json"), 400, "malformed_json",
        "malformed-json"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b"", content_type="application/json"),
        422, "validation_failed", "empty-json-body"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b"null",
                            content_type="application/json"), 422, "validation_failed",
        "json-null-body"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b'{"user_id": "\xff"}',
                            content_type="application/json"), 400, "malformed_json",
        "body-not-utf-8"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b"[" * 50_000 + b"]" * 50_000,
                            content_type="application/json"), 400, "malformed_json",
        "body-nested-too-deeply"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b"amount=100",
                            content_type="text/plain"), 415, "unsupported_media_type",
        "text-plain-body"),
    row(lambda a: a.request("POST", "/wallets/topup", data=b"{}"), 415,
        "unsupported_media_type", "no-content-type"),
    row(lambda a: a.post("/wallets/topup", topup(metadata={"note": "x" * (1 << 20)})), 413,
        "body_too_large", "body-over-1-mib"),
    # Paths and query strings
    row(lambda a: a.get("/transactions/not-a-uuid"), 404, "not_found", "bad-uuid-in-path"),
    row(lambda a: a.get(f"/transactions/{uuid.uuid4()}"), 404, "transaction_not_found",
        "unknown-transaction"),
    row(lambda a: a.get("/transactions", query_string={"reference_id": "nope"}), 404,
        "transaction_not_found", "unknown-reference-id"),
    row(lambda a: a.get("/transactions"), 422, "validation_failed", "lookup-without-reference"),
    row(lambda a: a.get("/transactions", query_string={"reference_id": "r\x00"}), 422,
        "validation_failed", "lookup-of-a-reference-with-nul"),
    row(lambda a: a.get("/wallets/alice/transactions",
                        query_string={"asset_code": "EUR", "cursor": "garbage!"}), 400,
        "invalid_cursor", "bad-cursor"),
    row(lambda a: a.get("/wallets/alice/transactions",
                        query_string={"asset_code": "EUR", "cursor": "djI6MTA"}), 400,
        "invalid_cursor", "cursor-of-another-version"),
    row(lambda a: a.get("/wallets/alice/transactions",
                        query_string={"asset_code": "EUR", "limit": 0}), 422,
        "validation_failed", "limit-zero"),
    row(lambda a: a.get("/wallets/alice/transactions",
                        query_string={"asset_code": "EUR", "limit": 201}), 422,
        "validation_failed", "limit-over-200"),
    row(lambda a: a.get("/wallets/alice/transactions",
                        query_string={"asset_code": "EUR", "limit": "ten"}), 422,
        "validation_failed", "limit-not-a-number"),
    row(lambda a: a.get(f"/transactions/{uuid.uuid4()}", query_string={"wait": 31}), 422,
        "validation_failed", "wait-over-30"),
    row(lambda a: a.get(f"/transactions/{uuid.uuid4()}", query_string={"wait": -1}), 422,
        "validation_failed", "wait-negative"),
    row(lambda a: a.post("/wallets/topup?wait=31", topup()), 422, "validation_failed",
        "wait-over-30-on-submission"),
    row(lambda a: a.get("/wallets/nobody/balance", query_string={"asset_code": "EUR"}), 404,
        "wallet_not_found", "balance-of-unknown-wallet"),
    row(lambda a: a.get("/wallets/nobody/holds", query_string={"asset_code": "EUR"}), 404,
        "wallet_not_found", "holds-of-unknown-wallet"),
    row(lambda a: a.get("/wallets/alice/holds",
                        query_string={"asset_code": "EUR", "cursor": "garbage!"}), 400,
        "invalid_cursor", "bad-holds-cursor"),
    row(lambda a: a.get("/wallets/alice/holds",
                        query_string={"asset_code": "EUR", "status": "pending"}), 422,
        "validation_failed", "unknown-hold-status"),
    row(lambda a: a.get("/wallets/alice/holds", query_string={"asset_code": "EUR", "limit": 0}),
        422, "validation_failed", "holds-limit-zero"),
    row(lambda a: a.get("/wallets/alice/holds"), 422, "validation_failed",
        "holds-without-asset"),
    row(lambda a: a.get("/wallets/@topup/holds", query_string={"asset_code": "EUR"}), 422,
        "invalid_user_id", "holds-of-a-system-account"),
    row(lambda a: a.get("/wallets/alice/balance"), 422, "validation_failed",
        "balance-without-asset"),
    # Who is asking
    row(lambda a: a.post("/wallets/topup", topup(), key=NO_KEY), 401, "missing_api_key",
        "missing-api-key"),
    row(lambda a: a.post("/wallets/topup", topup(), key="tally_unknown"), 401, "invalid_api_key",
        "unknown-api-key"),
    row(lambda a: a.post("/wallets/topup", topup(), key=revoked_key(a)), 401, "invalid_api_key",
        "revoked-api-key"),
    row(lambda a: a.post("/wallets/topup", topup(), key=NO_KEY,
                         headers={"Authorization": f"Basic {a.tenant.api_key}"}), 401,
        "invalid_authorization", "not-a-bearer-token"),
    row(lambda a: a.post("/transactions", transaction("adjustment", reason="fix")), 403,
        "admin_key_required", "adjustment-with-ordinary-key"),
    row(lambda a: a.request("PATCH", "/wallets/alice", json={"asset_code": "EUR",
                                                              "status": "frozen"}), 403,
        "admin_key_required", "wallet-update-with-ordinary-key"),
    row(lambda a: a.post("/assets", {"code": "GOLD", "name": "Gold", "decimal_places": 0}), 403,
        "admin_key_required", "asset-creation-with-ordinary-key"),
    # Conflicts and other tenants
    row(reuse_reference_with_another_body, 409, "idempotency_key_reused",
        "same-reference-different-body"),
    row(another_tenants_transaction, 404, "transaction_not_found",
        "another-tenants-transaction"),
    # Routing
    row(lambda a: a.get("/nowhere"), 404, "not_found", "unknown-route"),
    row(lambda a: a.get("/nowhere", key=NO_KEY), 404, "not_found", "unknown-route-without-key"),
    row(lambda a: a.request("DELETE", "/transactions"), 405, "method_not_allowed",
        "wrong-method"),
    row(lambda a: a.get("/wallets/topup"), 405, "method_not_allowed", "get-on-a-post-route"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "status", "code"), BAD_REQUESTS)
def test_bad_request_is_answered_with_its_problem_code(
    api: Api, call: Call, status: int, code: str
) -> None:
    response = call(api)

    body = response.get_json(force=True, silent=True)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "application/problem+json"
    assert body is not None and body["code"] == code, body
    assert body["status"] == status
    assert body["type"].endswith(code) and body["title"] and body["detail"]


def test_validation_problem_names_each_bad_field(api: Api) -> None:
    response = api.post("/wallets/topup", topup(amount="100", user_id=MISSING, colour="blue"))

    errors = response.get_json()["errors"]
    assert set(errors) == {"amount", "user_id", "colour"}


def test_wrong_method_names_the_allowed_ones(api: Api) -> None:
    response = api.request("DELETE", "/transactions")

    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_missing_key_is_challenged_with_bearer(api: Api) -> None:
    response = api.get(f"/transactions/{uuid.uuid4()}", key=NO_KEY)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
