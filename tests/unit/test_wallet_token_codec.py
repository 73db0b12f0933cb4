"""The wallet-token codec's checks made before any key is read: shape, algorithm, kid, aud."""

from __future__ import annotations

import base64
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.wallet_token_keys import public_key_from_text, public_key_text
from ledger.wallet_tokens import WalletTokenRefused, claimed_tenant, looks_like_jwt

TENANT = uuid.uuid4()
CLAIMS = {"iss": "tally", "aud": str(TENANT), "sub": "alice", "jti": str(uuid.uuid4())}


def _segment(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_an_api_key_is_not_taken_for_a_jwt():
    assert looks_like_jwt("a.b.c")
    assert not looks_like_jwt("tally_" + "x" * 43)
    assert not looks_like_jwt("tally_a.b.c")
    assert not looks_like_jwt("a.b")


def test_an_eddsa_token_names_its_tenant_and_kid():
    key = Ed25519PrivateKey.generate()
    token = jwt.encode(CLAIMS, key, algorithm="EdDSA", headers={"kid": "k1"})
    assert claimed_tenant(token) == (TENANT, "k1")


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "kid": "k1"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "RS256", "kid": "k1"},
        {"alg": "EdDSA"},
        {"alg": "EdDSA", "kid": ""},
    ],
)
def test_any_other_algorithm_or_a_missing_kid_is_refused_unread(header):
    token = f"{_segment(header)}.{_segment(CLAIMS)}.c2ln"
    with pytest.raises(WalletTokenRefused) as refused:
        claimed_tenant(token)
    assert refused.value.code == "invalid_wallet_token"


@pytest.mark.parametrize("aud", ["not-a-uuid", None, [str(TENANT)]])
def test_an_audience_that_is_not_one_tenant_id_is_refused(aud):
    claims = {**CLAIMS, "aud": aud}
    token = f"{_segment({'alg': 'EdDSA', 'kid': 'k1'})}.{_segment(claims)}.c2ln"
    with pytest.raises(WalletTokenRefused):
        claimed_tenant(token)


def test_garbage_is_refused():
    with pytest.raises(WalletTokenRefused):
        claimed_tenant("not.a.token")


def test_a_public_key_survives_its_text_form():
    key = Ed25519PrivateKey.generate()
    signature = key.sign(b"message")
    public_key_from_text(public_key_text(key)).verify(signature, b"message")
