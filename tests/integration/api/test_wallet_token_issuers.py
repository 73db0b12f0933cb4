"""A merchant's own issuer: its uploaded public keys verify the wallet tokens it signs,
by the same rules as Tally's own, and its tokens spend within their limits durably."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import text

from ledger.wallet_token_issuers import token_id
from tests.conftest import make_tenant
from tests.integration.api.conftest import Api
from tests.integration.api.test_wallet_tokens import refusal, unsigned
from tests.integration.ledger.helpers import run

ISS = "https://merchant.example"
EUR = {"asset_code": "EUR"}


@dataclass
class Issuer:
    id: uuid.UUID
    ec_key: ec.EllipticCurvePrivateKey
    rsa_key: rsa.RSAPrivateKey


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    codec = ECAlgorithm if isinstance(private_key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk: dict[str, Any] = codec.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid}


def register(api: Api, algorithms: list[str], keys: list[dict[str, Any]], iss: str = ISS) -> Any:
    body = {"iss": iss, "algorithms": algorithms, "jwks": {"keys": keys}}
    return api.post("/wallet-token-issuers", body, key=api.tenant.admin_api_key)


@pytest.fixture
def issuer(api: Api) -> Issuer:
    run(api.engine, api.tenant.id, "topup", user_id="alice", amount=10_000)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [public_jwk(ec_key, "ec-1"), public_jwk(rsa_key, "rsa-1")]
    answer = register(api, ["ES256", "RS256"], keys)
    assert answer.status_code == 201, answer.json
    return Issuer(uuid.UUID(answer.json["id"]), ec_key, rsa_key)


def claims_for(api: Api, **changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": ISS,
        "aud": str(api.tenant.id),
        "sub": "alice",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "scopes": ["read", "spend"],
    }
    return {**claims, **changes}


def mint(api: Api, issuer: Issuer, *, alg: str = "ES256", kid: str = "ec-1", **changes: Any) -> str:
    key = issuer.ec_key if alg.startswith("ES") else issuer.rsa_key
    return jwt.encode(claims_for(api, **changes), key, algorithm=alg, headers={"kid": kid})


def balance(api: Api, token: str) -> Any:
    return api.get("/wallets/alice/balance", key=token, query_string=EUR)


def spend(api: Api, token: str, amount: int) -> Any:
    body = {"user_id": "alice", "amount": amount, "reference_id": uuid.uuid4().hex, **EUR}
    return api.post("/wallets/spend", body, key=token)


def test_an_es256_token_of_a_registered_issuer_reads_and_spends_within_its_limits(
    api: Api, issuer: Issuer
):
    token = mint(api, issuer, max_amount=200, spend_limit=300, jti="order-1")
    assert balance(api, token).json["balance"] == 10_000
    assert spend(api, token, 200).status_code == 202
    refusal(spend(api, token, 201), 422, "over_max_amount")
    refusal(spend(api, token, 150), 422, "over_spend_limit")
    assert spend(api, token, 100).status_code == 202
    refusal(spend(api, token, 1), 422, "over_spend_limit")
    with api.engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, key_id, issuer_id, spent FROM wallet_tokens WHERE jti = 'order-1'")
        ).one()
    assert row.key_id is None and row.issuer_id == issuer.id and row.spent == 300
    assert row.id == token_id(issuer.id, "order-1")


def test_an_rs256_token_verifies_with_the_issuers_rsa_key(api: Api, issuer: Issuer):
    assert balance(api, mint(api, issuer, alg="RS256", kid="rsa-1")).status_code == 200


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown issuer", "invalid_wallet_token"),
        ("unknown kid", "invalid_wallet_token"),
        ("algorithm the issuer does not allow", "invalid_wallet_token"),
        ("algorithm that does not fit the key", "invalid_wallet_token"),
        ("alg none", "invalid_wallet_token"),
        ("HS256 keyed by the public key", "invalid_wallet_token"),
        ("expired", "token_expired"),
        ("not yet valid", "token_not_yet_valid"),
        ("wrong audience", "invalid_wallet_token"),
        ("lifetime too long", "invalid_wallet_token"),
        ("no jti", "invalid_wallet_token"),
        ("bad scopes", "invalid_wallet_token"),
        ("bad signature", "invalid_wallet_token"),
    ],
)
def test_a_token_breaking_a_rule_is_refused_with_a_stable_code(
    api: Api, issuer: Issuer, case: str, code: str
):
    now = int(datetime.now(UTC).timestamp())
    pem = issuer.ec_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    other = make_tenant(api.engine)
    tokens = {
        "unknown issuer": lambda: mint(api, issuer, iss="https://other.example"),
        "unknown kid": lambda: mint(api, issuer, kid="ec-2"),
        "algorithm the issuer does not allow": lambda: mint(api, issuer, alg="PS256", kid="rsa-1"),
        "algorithm that does not fit the key": lambda: mint(api, issuer, alg="RS256", kid="ec-1"),
        "alg none": lambda: unsigned({"alg": "none", "kid": "ec-1"}, claims_for(api), None),
        "HS256 keyed by the public key": lambda: unsigned(
            {"alg": "HS256", "kid": "ec-1"}, claims_for(api), pem
        ),
        "expired": lambda: mint(api, issuer, iat=now - 1000, exp=now - 100),
        "not yet valid": lambda: mint(api, issuer, iat=now, nbf=now + 300, exp=now + 600),
        "wrong audience": lambda: mint(api, issuer, aud=str(other.id)),
        "lifetime too long": lambda: mint(api, issuer, exp=now + 86_401),
        "no jti": lambda: mint(api, issuer, jti=None),
        "bad scopes": lambda: mint(api, issuer, scopes=["read", "spend", "hold"]),
        "bad signature": lambda: mint(api, issuer)[:-6] + "AAAAAA",
    }
    token = tokens[case]()
    answer = balance(api, token)
    refusal(answer, 401, code)
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_token_is_revoked_by_its_recorded_id_and_an_issuer_deleted_refuses_all(
    api: Api, issuer: Issuer
):
    token = mint(api, issuer, jti="to-revoke")
    assert balance(api, token).status_code == 200
    revoked = api.request("DELETE", f"/wallet-tokens/{token_id(issuer.id, 'to-revoke')}")
    assert revoked.status_code == 200 and revoked.json["user_id"] == "alice"
    refusal(balance(api, token), 401, "token_revoked")
    refusal(spend(api, token, 1), 401, "token_revoked")

    other = mint(api, issuer)
    assert balance(api, other).status_code == 200
    admin = api.tenant.admin_api_key
    assert api.request("DELETE", f"/wallet-token-issuers/{issuer.id}", key=admin).status_code == 204
    refusal(balance(api, other), 401, "invalid_wallet_token")
    missing = api.request("DELETE", f"/wallet-token-issuers/{issuer.id}", key=admin)
    refusal(missing, 404, "wallet_token_issuer_not_found")
    actions = {e["action"] for e in api.get("/audit-events", key=admin).json["events"]}
    assert {"wallet_token_issuer.created", "wallet_token_issuer.deleted"} <= actions
    assert api.get("/wallet-token-issuers", key=admin).json == []


def test_an_issuer_registered_again_keeps_its_tokens_spending_and_revocations(
    api: Api, issuer: Issuer
):
    spender = mint(api, issuer, spend_limit=100)
    assert spend(api, spender, 100).status_code == 202
    revoked = mint(api, issuer, jti="gone")
    assert balance(api, revoked).status_code == 200
    assert api.request("DELETE", f"/wallet-tokens/{token_id(issuer.id, 'gone')}").status_code == 200
    admin = api.tenant.admin_api_key
    assert api.request("DELETE", f"/wallet-token-issuers/{issuer.id}", key=admin).status_code == 204
    again = register(api, ["ES256"], [public_jwk(issuer.ec_key, "ec-1")])
    assert again.status_code == 201 and again.json["id"] == str(issuer.id)
    refusal(spend(api, spender, 1), 422, "over_spend_limit")
    refusal(balance(api, revoked), 401, "token_revoked")
    # The RSA key was not uploaded again: its tokens no longer verify.
    refusal(balance(api, mint(api, issuer, alg="RS256", kid="rsa-1")), 401, "invalid_wallet_token")


def test_a_jti_reused_for_another_user_is_refused(api: Api, issuer: Issuer):
    run(api.engine, api.tenant.id, "topup", user_id="bob", amount=10)
    assert balance(api, mint(api, issuer, jti="shared")).status_code == 200
    reused = mint(api, issuer, jti="shared", sub="bob")
    answer = api.get("/wallets/bob/balance", key=reused, query_string=EUR)
    refusal(answer, 401, "invalid_wallet_token")


def test_issuers_are_listed_and_registered_once_by_admin_keys(api: Api, issuer: Issuer):
    listed = api.get("/wallet-token-issuers", key=api.tenant.admin_api_key).json
    assert [(i["id"], i["iss"], i["algorithms"]) for i in listed] == [
        (str(issuer.id), ISS, ["ES256", "RS256"])
    ]
    assert {key["kid"] for key in listed[0]["jwks"]["keys"]} == {"ec-1", "rsa-1"}
    again = register(api, ["ES256"], [public_jwk(issuer.ec_key, "ec-1")])
    refusal(again, 409, "wallet_token_issuer_exists")
    body = {"iss": "x", "algorithms": ["ES256"], "jwks": {"keys": []}}
    refusal(api.post("/wallet-token-issuers", body), 403, "admin_key_required")


@pytest.mark.parametrize(
    ("algorithms", "key", "code"),
    [
        (["ES256"], "private", "private_key_uploaded"),
        (["ES256"], "hmac", "invalid_jwks"),
        (["ES256"], "no kid", "invalid_jwks"),
        (["ES256"], "rsa", "invalid_jwks"),
        (["ES384"], "ec", "invalid_jwks"),
        (["ES256"], "not a key", "invalid_jwks"),
        (["ES256"], "for another alg", "invalid_jwks"),
        (["ES256"], "for encryption", "invalid_jwks"),
    ],
)
def test_a_jwks_upload_breaking_a_rule_is_refused(
    api: Api, algorithms: list[str], key: str, code: str
):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public = public_jwk(ec_key, "k1")
    keys = {
        "private": {**ECAlgorithm.to_jwk(ec_key, as_dict=True), "kid": "k1"},
        "hmac": {"kty": "oct", "k": "c2VjcmV0", "kid": "k1"},
        "no kid": {name: value for name, value in public.items() if name != "kid"},
        "rsa": public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k1"),
        "ec": public,
        "not a key": {**public, "x": "AAAA"},
        "for another alg": {**public, "alg": "ES384"},
        "for encryption": {**public, "use": "enc"},
    }
    refusal(register(api, algorithms, [keys[key]]), 422, code)


@pytest.mark.parametrize("algorithm", ["HS256", "none"])
def test_hmac_and_none_are_never_allowed_algorithms(api: Api, algorithm: str):
    public = public_jwk(ec.generate_private_key(ec.SECP256R1()), "k1")
    refusal(register(api, [algorithm, "ES256"], [public]), 422, "validation_failed")


def test_the_iss_of_tallys_own_tokens_is_not_registrable(api: Api):
    public = public_jwk(ec.generate_private_key(ec.SECP256R1()), "k1")
    refusal(register(api, ["ES256"], [public], iss="tally"), 422, "validation_failed")


def test_a_tally_token_is_still_verified_as_before(api: Api, issuer: Issuer):
    issued = api.post("/wallet-tokens", {"user_id": "alice", "ttl": 60})
    assert balance(api, issued.json["token"]).status_code == 200
    expires = datetime.now(UTC) + timedelta(seconds=60)
    assert datetime.fromisoformat(issued.json["expires_at"]) <= expires
