"""Each tenant's Ed25519 keys for signing wallet tokens: made on first issue, the private
half sealed at rest by the SecretBox that seals webhook secrets, published as a JWKS.

A rotation retires the current key; a retired key still verifies until `verify_until`,
the expiry of the last token it can have signed (the longest lifetime plus the leeway).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Connection, text

from ledger.db import UnitOfWork
from ledger.webhooks.secrets import SecretBox, SecretUnreadable

# The longest lifetime a token may be given, and the clock skew verification forgives.
MAX_TTL_SECONDS = 86_400
LEEWAY_SECONDS = 60

CURRENT_KEY = text(
    "SELECT id, private_key_sealed FROM wallet_token_keys"
    " WHERE tenant_id = :tenant_id AND retired_at IS NULL"
)
INSERT_KEY = text(
    """
    INSERT INTO wallet_token_keys (id, tenant_id, public_key, private_key_sealed)
    VALUES (:id, :tenant_id, :public_key, :private_key_sealed)
    ON CONFLICT (tenant_id) WHERE retired_at IS NULL DO NOTHING
    """
)
# The keys that still verify: the current one and those retired whose tokens may live.
LIVE_KEYS = text(
    "SELECT id, public_key FROM wallet_token_keys WHERE tenant_id = :tenant_id"
    " AND (retired_at IS NULL OR verify_until > now()) ORDER BY created_at, id"
)
VERIFYING_KEY = text(
    "SELECT public_key FROM wallet_token_keys WHERE tenant_id = :tenant_id AND id = :id"
    " AND (retired_at IS NULL OR verify_until > now())"
)
RETIRE_CURRENT = text(
    """
    UPDATE wallet_token_keys SET retired_at = now(),
        verify_until = now() + make_interval(secs => :lifetime)
    WHERE tenant_id = :tenant_id AND retired_at IS NULL RETURNING id
    """
)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """The raw public key, base64url without padding (a JWK's `x`)."""
    return _b64(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_text(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(value))


def signing_key(work: UnitOfWork, box: SecretBox, tenant_id: uuid.UUID) -> SigningKey:
    """The tenant's current signing key, made (and sealed) on its first use."""
    conn = work.connection
    row = conn.execute(CURRENT_KEY, {"tenant_id": tenant_id}).first()
    if row is None:
        made = Ed25519PrivateKey.generate()
        conn.execute(
            INSERT_KEY,
            {
                "id": secrets.token_urlsafe(12),
                "tenant_id": tenant_id,
                "public_key": public_key_text(made),
                "private_key_sealed": box.seal(_b64(made.private_bytes_raw())),
            },
        )
        # A concurrent first issue may have made it instead: read whichever is current.
        row = conn.execute(CURRENT_KEY, {"tenant_id": tenant_id}).one()
    raw = _unb64(box.open(row.private_key_sealed))
    return SigningKey(row.id, Ed25519PrivateKey.from_private_bytes(raw))


def verifying_key(conn: Connection, tenant_id: uuid.UUID, kid: str) -> Ed25519PublicKey | None:
    """The public key `kid` names among the tenant's live keys, or None."""
    value = conn.execute(VERIFYING_KEY, {"tenant_id": tenant_id, "id": kid}).scalar()
    return public_key_from_text(value) if value is not None else None


def jwks(conn: Connection, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's live public keys as a JSON Web Key Set (OKP, Ed25519)."""
    rows = conn.execute(LIVE_KEYS, {"tenant_id": tenant_id}).all()
    return {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": row.public_key, "kid": row.id}
            | {"alg": "EdDSA", "use": "sig"}
            for row in rows
        ]
    }


def rotate_signing_key(work: UnitOfWork, tenant_id: uuid.UUID) -> str | None:
    """Retire the tenant's current key (it verifies on while its tokens may live); the next
    issue makes a new one. The retired key's id, or None when there was none."""
    kid: str | None = work.connection.execute(
        RETIRE_CURRENT,
        {"tenant_id": tenant_id, "lifetime": MAX_TTL_SECONDS + LEEWAY_SECONDS},
    ).scalar()
    return kid


def reseal_signing_keys(work: UnitOfWork, box: SecretBox) -> tuple[int, list[str]]:
    """Seal every tenant's signing key again under the box's first key (with
    `tally webhook-secrets reseal`, so that older keys can be retired): how many, and the
    ids of those no key opens (left as they are)."""
    conn = work.connection
    rows = conn.execute(
        text("SELECT id, private_key_sealed FROM wallet_token_keys ORDER BY id FOR UPDATE")
    ).all()
    resealed, unreadable = 0, []
    for kid, sealed in rows:
        try:
            again = box.reseal(sealed)
        except SecretUnreadable:
            unreadable.append(kid)
            continue
        conn.execute(
            text("UPDATE wallet_token_keys SET private_key_sealed = :sealed WHERE id = :id"),
            {"id": kid, "sealed": again},
        )
        resealed += 1
    return resealed, unreadable
