"""Wallet tokens: a wallet owner's app reads and spends its own wallet, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import text

from ledger.db import tenant_scope, unit_of_work
from ledger.errors import InvalidRequest
from ledger.wallet_token_keys import rotate_signing_key, signing_key
from ledger.wallet_tokens import WalletTokenRefused, charge_wallet_token
from tests.conftest import TenantFixture, make_tenant, secret_box
from tests.integration.api.conftest import Api
from tests.integration.ledger.helpers import run

EUR = {"asset_code": "EUR"}


def issue(api: Api, user_id: str = "alice", **fields: Any) -> dict[str, Any]:
    answer = api.post("/wallet-tokens", {"user_id": user_id, **fields})
    assert answer.status_code == 201, answer.json
    return answer.json


def token_for(api: Api, user_id: str = "alice", **fields: Any) -> str:
    return str(issue(api, user_id, **fields)["token"])


def refusal(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.json
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["code"] == code


def forged(api: Api, tenant_id: uuid.UUID | None = None, **changes: Any) -> str:
    """A token signed with the tenant's real key, with claims of the test's choosing."""
    with tenant_scope(api.tenant.id), unit_of_work(api.engine) as work:
        key = signing_key(work, secret_box(), api.tenant.id)
    real = jwt.decode(token_for(api), options={"verify_signature": False})
    claims = {**real, **changes}
    if tenant_id is not None:
        claims["aud"] = str(tenant_id)
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token with any header, signed HS256 by `secret` (or not at all)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return head + "."
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


@pytest.fixture
def alice(api: Api) -> Api:
    run(api.engine, api.tenant.id, "topup", user_id="alice", amount=10_000)
    run(api.engine, api.tenant.id, "topup", user_id="bob", amount=10_000)
    return api


def test_issuing_answers_a_jwt_verifiable_with_the_published_jwks(alice: Api):
    issued = issue(alice, scopes=["read", "spend"], ttl=600, max_amount=500)
    keys = alice.get("/wallet-tokens/jwks").json["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(
        issued["token"], public, algorithms=["EdDSA"], audience=str(alice.tenant.id)
    )
    assert claims["iss"] == "tally" and claims["sub"] == "alice"
    assert claims["jti"] == issued["id"] and claims["exp"] - claims["iat"] == 600
    assert claims["scopes"] == ["read", "spend"] and claims["max_amount"] == 500
    assert jwt.get_unverified_header(issued["token"])["kid"] == keys[0]["kid"]


def test_the_signing_key_is_sealed_at_rest(alice: Api):
    token_for(alice)
    with alice.engine.connect() as conn:
        sealed = conn.execute(
            text("SELECT private_key_sealed FROM wallet_token_keys WHERE tenant_id = :t"),
            {"t": alice.tenant.id},
        ).scalar_one()
    assert sealed.startswith("gAAAAA")
    assert secret_box().open(sealed)  # opens only with the deployment's key


def test_a_read_key_cannot_issue_and_issuing_and_revoking_are_audited(alice: Api):
    refused = alice.post("/wallet-tokens", {"user_id": "alice"}, key=alice.tenant.read_api_key)
    refusal(refused, 403, "write_key_required")
    issued = issue(alice)
    assert alice.request("DELETE", f"/wallet-tokens/{issued['id']}").status_code == 200
    events = alice.get("/audit-events", key=alice.tenant.admin_api_key).json["events"]
    actions = [event["action"] for event in events]
    assert "wallet_token.issued" in actions and "wallet_token.revoked" in actions
    missing = alice.request("DELETE", f"/wallet-tokens/{uuid.uuid4()}")
    refusal(missing, 404, "wallet_token_not_found")


def test_a_token_reads_its_own_wallet(alice: Api):
    token = token_for(alice)
    balance = alice.get("/wallets/alice/balance", key=token, query_string=EUR)
    assert balance.status_code == 200 and balance.json["balance"] == 10_000
    for what in ("transactions", "holds"):
        assert alice.get(f"/wallets/alice/{what}", key=token, query_string=EUR).status_code == 200
    statement = alice.get(
        "/wallets/alice/statement",
        key=token,
        query_string={**EUR, "from": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
    )
    assert statement.status_code == 200, statement.json
    own = alice.get("/wallets/alice/transactions", key=token, query_string=EUR).json["items"][0]
    found = alice.get(f"/transactions/{own['transaction_id']}", key=token)
    assert found.status_code == 200


def test_another_users_wallet_is_absent(alice: Api):
    token = token_for(alice, scopes=["read", "spend"])
    for what in ("balance", "transactions", "holds"):
        answer = alice.get(f"/wallets/bob/{what}", key=token, query_string=EUR)
        refusal(answer, 404, "wallet_not_found")
    bobs = alice.get("/wallets/bob/transactions", query_string=EUR).json["items"][0]
    refusal(alice.get(f"/transactions/{bobs['transaction_id']}", key=token), 404,
            "transaction_not_found")  # fmt: skip
    spend = {"reference_id": "s-bob", "user_id": "bob", "amount": 1, **EUR}
    refusal(alice.post("/wallets/spend", spend, key=token), 404, "wallet_not_found")


def test_anything_else_is_out_of_the_tokens_scope(alice: Api):
    token = token_for(alice)
    cases = [
        ("POST", "/wallets/spend", {"reference_id": "s1", "user_id": "alice", "amount": 1, **EUR}),
        ("POST", "/wallets/topup", {"reference_id": "t1", "user_id": "alice", "amount": 1, **EUR}),
        ("GET", "/api-keys", None),
        ("GET", "/audit-events", None),
        ("POST", "/wallets/alice/freeze", EUR),
        ("PATCH", "/wallets/alice", {**EUR, "credit_limit": 5}),
        ("GET", "/assets", None),
        ("POST", "/wallet-tokens", {"user_id": "alice"}),
        ("GET", "/wallet-tokens/jwks", None),
    ]
    for method, path, body in cases:
        refusal(alice.request(method, path, key=token, json=body), 403, "token_scope")
    hold = {"type": "hold", "reference_id": "h1", "user_id": "alice", "amount": 1, **EUR}
    spender = token_for(alice, scopes=["read", "spend"])
    refusal(alice.post("/transactions", hold, key=spender), 403, "token_scope")
    limited = token_for(alice, asset_codes=["USD"])
    refusal(alice.get("/wallets/alice/balance", key=limited, query_string=EUR), 403,
            "token_scope")  # fmt: skip


def test_a_spend_and_a_hold_within_scope_are_accepted(alice: Api):
    spender = token_for(alice, scopes=["read", "spend"], asset_codes=["EUR"])
    spend = {"reference_id": "s1", "user_id": "alice", "amount": 300, **EUR}
    assert alice.post("/wallets/spend", spend, key=spender).status_code == 202
    holder = token_for(alice, scopes=["read", "hold"])
    hold = {"type": "hold", "reference_id": "h1", "user_id": "alice", "amount": 200, **EUR}
    answer = alice.post("/transactions", hold, key=holder)
    assert answer.status_code == 202, answer.json
    split = {**spend, "reference_id": "s2", "splits": [{"to_user_id": "bob", "amount": 300}]}
    refusal(alice.post("/wallets/spend", split, key=spender), 403, "token_scope")


def test_over_max_amount_is_refused(alice: Api):
    token = token_for(alice, scopes=["read", "spend"], max_amount=100)
    spend = {"reference_id": "big", "user_id": "alice", "amount": 101, **EUR}
    refusal(alice.post("/wallets/spend", spend, key=token), 422, "over_max_amount")
    assert alice.post("/wallets/spend", {**spend, "amount": 100}, key=token).status_code == 202


def test_the_spend_limit_holds_under_concurrent_spends(app: Flask, alice: Api):
    limit, amount = 1_000, 70
    token = token_for(alice, scopes=["read", "spend"], spend_limit=limit)

    def spend(number: int) -> tuple[int, str | None]:
        body = {"reference_id": f"c-{number}", "user_id": "alice", "amount": amount, **EUR}
        answer = Api(app.test_client(), alice.tenant, alice.engine).post(
            "/wallets/spend", body, key=token
        )
        return answer.status_code, (answer.json or {}).get("code")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(spend, range(20)))
    accepted = [a for a in answers if a[0] == 202]
    assert len(accepted) == limit // amount, answers
    assert all(a == (422, "over_spend_limit") for a in answers if a[0] != 202), answers
    # A replay of an accepted spend counts nothing.
    first = next(n for n, a in enumerate(answers) if a[0] == 202)
    replay = {"reference_id": f"c-{first}", "user_id": "alice", "amount": amount, **EUR}
    assert alice.post("/wallets/spend", replay, key=token).status_code == 200
    with alice.engine.connect() as conn:
        spent = conn.execute(
            text("SELECT spent FROM wallet_tokens WHERE tenant_id = :t"), {"t": alice.tenant.id}
        ).scalar_one()
    assert spent == amount * (limit // amount)


def test_an_expired_token_is_refused(alice: Api):
    past = datetime.now(UTC) - timedelta(minutes=10)
    token = forged(alice, iat=past - timedelta(minutes=5), nbf=past, exp=past)
    refusal(alice.get("/wallets/alice/balance", key=token, query_string=EUR), 401,
            "token_expired")  # fmt: skip


def test_a_token_not_yet_valid_is_refused(alice: Api):
    soon = datetime.now(UTC) + timedelta(minutes=5)
    token = forged(alice, nbf=soon, exp=soon + timedelta(minutes=10))
    refusal(alice.get("/wallets/alice/balance", key=token, query_string=EUR), 401,
            "token_not_yet_valid")  # fmt: skip


def test_a_token_within_the_leeway_is_accepted(alice: Api):
    just_now = datetime.now(UTC) - timedelta(seconds=30)
    token = forged(alice, exp=just_now)
    assert alice.get("/wallets/alice/balance", key=token, query_string=EUR).status_code == 200


def test_wrong_audience_unknown_issuer_and_unknown_kid_are_invalid(alice: Api, engine: Any) -> None:
    other: TenantFixture = make_tenant(engine)
    tokens = [
        forged(alice, tenant_id=other.id),
        forged(alice, iss="someone-else"),
        forged(alice, aud="not-a-uuid"),
    ]
    real = token_for(alice)
    claims = jwt.decode(real, options={"verify_signature": False})
    stranger = Ed25519PrivateKey.generate()
    tokens.append(jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "unknown"}))
    for token in tokens:
        refusal(alice.get("/wallets/alice/balance", key=token, query_string=EUR), 401,
                "invalid_wallet_token")  # fmt: skip


def test_a_forged_signature_is_invalid(alice: Api):
    real = token_for(alice)
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "bob"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    refusal(alice.get("/wallets/bob/balance", key=tampered, query_string=EUR), 401,
            "invalid_wallet_token")  # fmt: skip
    # Signed by another key under the tenant's kid.
    kid = jwt.get_unverified_header(real)["kid"]
    stranger = Ed25519PrivateKey.generate()
    resigned = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": kid})
    refusal(alice.get("/wallets/bob/balance", key=resigned, query_string=EUR), 401,
            "invalid_wallet_token")  # fmt: skip


def test_alg_none_and_hs256_with_the_public_key_are_invalid(alice: Api):
    real = token_for(alice)
    kid = jwt.get_unverified_header(real)["kid"]
    claims = jwt.decode(real, options={"verify_signature": False})
    public_x = alice.get("/wallet-tokens/jwks").json["keys"][0]["x"]
    raw_public = base64.urlsafe_b64decode(public_x + "==")
    tokens = [
        unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims, None),
        unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, raw_public),
        unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, public_x.encode()),
    ]
    for token in tokens:
        refusal(alice.get("/wallets/alice/balance", key=token, query_string=EUR), 401,
                "invalid_wallet_token")  # fmt: skip


def test_a_revoked_token_is_refused_at_once(alice: Api):
    issued = issue(alice, scopes=["read", "spend"])
    token = issued["token"]
    assert alice.get("/wallets/alice/balance", key=token, query_string=EUR).status_code == 200
    assert alice.request("DELETE", f"/wallet-tokens/{issued['id']}").status_code == 200
    refusal(alice.get("/wallets/alice/balance", key=token, query_string=EUR), 401,
            "token_revoked")  # fmt: skip


def test_a_rotated_key_still_verifies_its_tokens(alice: Api):
    before = token_for(alice)
    with tenant_scope(alice.tenant.id), unit_of_work(alice.engine) as work:
        assert rotate_signing_key(work, alice.tenant.id) is not None
    after = token_for(alice)
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]
    assert len(alice.get("/wallet-tokens/jwks").json["keys"]) == 2
    for token in (before, after):
        assert alice.get("/wallets/alice/balance", key=token, query_string=EUR).status_code == 200


def test_the_cli_rotates_a_tenants_signing_key(alice: Api, database_url: str):
    before = token_for(alice)
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "tally.cli", "wallet-token-keys", "rotate"]
    done = subprocess.run(
        [*command, "--tenant", str(alice.tenant.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"retired": jwt.get_unverified_header(before)["kid"]}
    assert alice.get("/wallets/alice/balance", key=before, query_string=EUR).status_code == 200


def test_a_token_revoked_after_its_request_was_authenticated_charges_nothing(alice: Api):
    issued = issue(alice, scopes=["read", "spend"], spend_limit=100)
    other = issue(alice, scopes=["read", "spend"], spend_limit=100)
    assert alice.request("DELETE", f"/wallet-tokens/{issued['id']}").status_code == 200
    with unit_of_work(alice.engine) as work:
        with pytest.raises(WalletTokenRefused) as refused:
            charge_wallet_token(work.connection, alice.tenant.id, uuid.UUID(issued["id"]), 1)
        assert refused.value.code == "token_revoked"
        with pytest.raises(InvalidRequest) as over:
            charge_wallet_token(work.connection, alice.tenant.id, uuid.UUID(other["id"]), 101)
        assert over.value.code == "over_spend_limit"


def test_a_reference_another_users_transaction_took_is_a_reuse(alice: Api):
    bobs = {"reference_id": "shared-ref", "user_id": "bob", "amount": 5, **EUR}
    assert alice.post("/wallets/spend", bobs).status_code == 202
    token = token_for(alice, scopes=["read", "spend"], spend_limit=100)
    mine = {**bobs, "user_id": "alice"}
    refusal(alice.post("/wallets/spend", mine, key=token), 409, "idempotency_key_reused")
    unknown = {**mine, "reference_id": "fresh", "asset_code": "NOPE"}
    refusal(alice.post("/wallets/spend", unknown, key=token), 404, "asset_not_found")
