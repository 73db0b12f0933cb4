"""A merchant's own issuer of wallet tokens: its `iss`, the algorithms it signs with, and
its public keys, a JWKS the merchant uploads (Tally never fetches anything).

A token of such an issuer is verified by the same rules as Tally's own
(ledger/wallet_tokens.py): the algorithm is pinned per key (the header's `alg` must be one
the issuer allows AND fit the key's type, and only that algorithm is passed to PyJWT with
the key object, so neither `none` nor an HMAC keyed by the public key can verify), 60 s
of leeway, the audience the tenant, the issuer the registered one, a lifetime of at most
a day. On its first verified use it is recorded in `wallet_tokens` by (tenant, issuer,
jti): its spend limit is then counted, and it is revoked, by the code that serves
Tally's own tokens.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import Connection, text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import Conflict, InvalidRequest, NotFound
from ledger.money import MAX_AMOUNT
from ledger.wallet_token_keys import MAX_TTL_SECONDS
from ledger.wallet_tokens import (
    ISSUER,
    SCOPE_SETS,
    WalletClaims,
    WalletTokenRefused,
    claimed_audience,
    decode_claims,
    verify_wallet_token,
)

# What an uploaded key may sign with, and the key type (kty, crv) each algorithm needs.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "EdDSA": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}
ALGORITHMS = tuple(KEY_TYPES)
# The members only a private key (or a secret) has.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_KEYS = 20
REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "exp"]

# A removed issuer of the same `iss` is revived with the new keys (its id, and so its
# tokens' records and their spending, kept); a live one is a conflict (no row).
INSERT_ISSUER = text(
    """
    INSERT INTO wallet_token_issuers (tenant_id, iss, algorithms, jwks)
    VALUES (:tenant_id, :iss, :algorithms, CAST(:jwks AS jsonb))
    ON CONFLICT (tenant_id, iss) DO UPDATE
        SET algorithms = excluded.algorithms, jwks = excluded.jwks, created_at = now(),
            deleted_at = NULL
        WHERE wallet_token_issuers.deleted_at IS NOT NULL
    RETURNING id, iss, algorithms, jwks, created_at
    """
)
LIST_ISSUERS = text(
    "SELECT id, iss, algorithms, jwks, created_at FROM wallet_token_issuers"
    " WHERE tenant_id = :tenant_id AND deleted_at IS NULL ORDER BY created_at, id"
)
DELETE_ISSUER = text(
    "UPDATE wallet_token_issuers SET deleted_at = now()"
    " WHERE tenant_id = :tenant_id AND id = :id AND deleted_at IS NULL RETURNING iss"
)
FIND_ISSUER = text(
    "SELECT id, algorithms, jwks FROM wallet_token_issuers"
    " WHERE tenant_id = :tenant_id AND iss = :iss AND deleted_at IS NULL"
)
# The first verified use records the token; later ones find it (and its revocation).
# Its id is `token_id(issuer id, jti)`: the merchant can name it to revoke it.
RECORD_TOKEN = text(
    """
    INSERT INTO wallet_tokens (id, tenant_id, issuer_id, jti, user_id, scopes, asset_codes,
                               max_amount, spend_limit, expires_at)
    VALUES (:id, :tenant_id, :issuer_id, :jti, :user_id, :scopes, :asset_codes, :max_amount,
            :spend_limit, :expires_at)
    ON CONFLICT (tenant_id, issuer_id, jti) WHERE issuer_id IS NOT NULL DO NOTHING
    """
)
RECORDED_TOKEN = text(
    "SELECT id, user_id, scopes, asset_codes, max_amount, spend_limit, expires_at, revoked_at"
    " FROM wallet_tokens WHERE tenant_id = :tenant_id AND issuer_id = :issuer_id AND jti = :jti"
)


class WalletTokenIssuerNotFound(NotFound):
    code = "wallet_token_issuer_not_found"


class WalletTokenIssuerExists(Conflict):
    code = "wallet_token_issuer_exists"


def token_id(issuer_id: uuid.UUID, jti: str) -> uuid.UUID:
    """The id a merchant's token is recorded under (`DELETE /wallet-tokens/{id}` revokes
    it): the UUIDv5 of its `jti` in the namespace of its issuer's id."""
    return uuid.uuid5(issuer_id, jti)


def fits(algorithm: str, jwk: dict[str, Any]) -> bool:
    """Whether the key's type is the one the algorithm signs with (and the key, if it
    names an `alg` or a `use`, is for that algorithm and for signatures)."""
    kty, crv = KEY_TYPES.get(algorithm, ("", None))
    return (
        jwk.get("kty") == kty
        and (crv is None or jwk.get("crv") == crv)
        and jwk.get("alg", algorithm) == algorithm
        and jwk.get("use", "sig") == "sig"
    )


def validate_jwks(jwks: Any, algorithms: list[str]) -> list[dict[str, Any]]:
    """The uploaded keys, each a public key with a `kid` that fits an allowed algorithm;
    422 `private_key_uploaded` for a private key, `invalid_jwks` for anything else wrong."""
    if not algorithms or any(name not in KEY_TYPES for name in algorithms):
        raise InvalidRequest(
            "invalid_jwks", f"algorithms must be among {', '.join(ALGORITHMS)}", field="algorithms"
        )
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise _invalid_jwks(f"jwks must be an object whose `keys` lists 1-{MAX_KEYS} keys")
    kids: set[str] = set()
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            raise _invalid_jwks(f"key {index} is not an object")
        if key.get("kty") == "oct":
            raise _invalid_jwks(f"key {index} is a symmetric (HMAC) key")
        if any(member in key for member in PRIVATE_MEMBERS):
            raise InvalidRequest(
                "private_key_uploaded",
                f"key {index} is a private key: upload only public keys",
                field="jwks",
            )
        kid = key.get("kid")
        if not isinstance(kid, str) or not 1 <= len(kid) <= 200 or kid in kids:
            raise _invalid_jwks(f"key {index} needs a `kid` of its own")
        kids.add(kid)
        if not any(fits(name, key) for name in algorithms):
            raise _invalid_jwks(f"key {index} fits none of the allowed algorithms")
        try:
            jwt.PyJWK(key)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise _invalid_jwks(f"key {index} is not a valid JWK") from None
    return keys


def issuer_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "iss": row.iss,
        "algorithms": list(row.algorithms),
        "jwks": row.jwks,
        "created_at": row.created_at.isoformat(),
    }


def create_issuer(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    *,
    iss: str,
    algorithms: list[str],
    jwks: Any,
    actor: Actor,
) -> dict[str, Any]:
    """Register an issuer and its public keys; audited. 409 when `iss` is registered."""
    if iss == ISSUER:
        raise InvalidRequest("invalid_jwks", f"iss {ISSUER!r} is Tally's own", field="iss")
    ordered = sorted(set(algorithms))
    keys = validate_jwks(jwks, ordered)
    row = work.connection.execute(
        INSERT_ISSUER,
        {
            "tenant_id": tenant_id,
            "iss": iss,
            "algorithms": ordered,
            "jwks": json.dumps({"keys": keys}),
        },
    ).first()
    if row is None:
        raise WalletTokenIssuerExists(f"issuer {iss!r} is already registered", field="iss")
    details = {"issuer_id": str(row.id), "iss": iss, "kids": [key["kid"] for key in keys]}
    audit.append_event(
        work.connection, tenant_id, actor, "wallet_token_issuer.created", f"issuer:{iss}", details
    )
    return issuer_view(row)


def list_issuers(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return [issuer_view(row) for row in conn.execute(LIST_ISSUERS, {"tenant_id": tenant_id})]


def delete_issuer(
    work: UnitOfWork, tenant_id: uuid.UUID, issuer_id: uuid.UUID, *, actor: Actor
) -> None:
    """Remove an issuer: its tokens are refused from the commit on; audited. Their records
    stay (what each spent, whether it was revoked) for the issuer registered again."""
    iss = work.connection.execute(DELETE_ISSUER, {"tenant_id": tenant_id, "id": issuer_id}).scalar()
    if iss is None:
        raise WalletTokenIssuerNotFound(f"no wallet token issuer {issuer_id}")
    audit.append_event(
        work.connection,
        tenant_id,
        actor,
        "wallet_token_issuer.deleted",
        f"issuer:{iss}",
        {"issuer_id": str(issuer_id)},
    )


def verify_bearer_token(conn: Connection, token: str) -> WalletClaims:
    """A wallet token of either kind, told apart by its unverified `iss`: Tally's own
    (`tally`), or one of the tenant's registered issuers. The connection is bound to the
    tenant the token claims (its `aud`); a write transaction, since a merchant's token is
    recorded on its first use."""
    tenant_id, iss = claimed_audience(token)
    if iss == ISSUER:
        return verify_wallet_token(conn, token)
    return verify_issuer_token(conn, tenant_id, iss, token)


def verify_issuer_token(
    conn: Connection, tenant_id: uuid.UUID, iss: str, token: str
) -> WalletClaims:
    issuer = conn.execute(FIND_ISSUER, {"tenant_id": tenant_id, "iss": iss}).first()
    if issuer is None:
        raise _invalid("The wallet token's issuer is unknown.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("The wallet token is malformed.") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    key = next((k for k in issuer.jwks["keys"] if k.get("kid") == kid), None)
    if key is None:
        raise _invalid("The wallet token's key is unknown.")
    if not isinstance(algorithm, str) or algorithm not in issuer.algorithms:
        raise _invalid("The wallet token's algorithm is not allowed for its issuer.")
    if not fits(algorithm, key):
        raise _invalid("The wallet token's algorithm does not fit its key.")
    claims = decode_claims(
        token, jwt.PyJWK(key, algorithm=algorithm), algorithm, tenant_id, iss, REQUIRED_CLAIMS
    )
    return _record(conn, tenant_id, issuer.id, _checked(claims))


def _checked(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims a merchant's token must carry, in the shapes Tally's own have."""
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int) or not isinstance(iat, int) or exp - iat > MAX_TTL_SECONDS:
        raise _invalid(f"A wallet token lives at most {MAX_TTL_SECONDS} s.")
    sub, jti, scopes = claims["sub"], claims["jti"], claims.get("scopes")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200:
        raise _invalid("The wallet token's sub is malformed.")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 200:
        raise _invalid("The wallet token's jti is malformed.")
    if not isinstance(scopes, list) or frozenset(scopes) not in SCOPE_SETS:
        raise _invalid("The wallet token's scopes are malformed.")
    for name in ("max_amount", "spend_limit"):
        value = claims.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT
        ):
            raise _invalid(f"The wallet token's {name} is malformed.")
    codes = claims.get("asset_codes")
    if codes is not None and (
        not isinstance(codes, list) or not all(isinstance(code, str) for code in codes)
    ):
        raise _invalid("The wallet token's asset_codes are malformed.")
    return claims


def _record(
    conn: Connection, tenant_id: uuid.UUID, issuer_id: uuid.UUID, claims: dict[str, Any]
) -> WalletClaims:
    codes = claims.get("asset_codes")
    params = {"tenant_id": tenant_id, "issuer_id": issuer_id, "jti": claims["jti"]}
    conn.execute(
        RECORD_TOKEN,
        {
            **params,
            "id": token_id(issuer_id, claims["jti"]),
            "user_id": claims["sub"],
            "scopes": sorted(set(claims["scopes"])),
            "asset_codes": sorted(set(codes)) if codes is not None else None,
            "max_amount": claims.get("max_amount"),
            "spend_limit": claims.get("spend_limit"),
            "expires_at": datetime.fromtimestamp(claims["exp"], UTC),
        },
    )
    row = conn.execute(RECORDED_TOKEN, params).one()
    if row.user_id != claims["sub"]:
        raise _invalid("The wallet token's jti was used for another user.")
    if row.revoked_at is not None:
        raise WalletTokenRefused("token_revoked", "The wallet token has been revoked.")
    # What the first use recorded rules: a second token reusing the jti changes nothing.
    return WalletClaims(
        token_id=row.id,
        tenant_id=tenant_id,
        user_id=row.user_id,
        scopes=frozenset(row.scopes),
        max_amount=int(row.max_amount) if row.max_amount is not None else None,
        spend_limit=int(row.spend_limit) if row.spend_limit is not None else None,
        asset_codes=frozenset(row.asset_codes) if row.asset_codes is not None else None,
        expires_at=row.expires_at,
    )


def _invalid_jwks(message: str) -> InvalidRequest:
    return InvalidRequest("invalid_jwks", message, field="jwks")


def _invalid(message: str) -> WalletTokenRefused:
    return WalletTokenRefused("invalid_wallet_token", message)
