"""Wallet tokens: short-lived JWTs a merchant hands to a wallet owner's app, letting it
read its own wallet and, with the scope for it, spend or hold from it within limits.

Each token is signed EdDSA (Ed25519) with its tenant's key (ledger/wallet_token_keys.py),
headed by the key's `kid`; its claims are iss "tally", aud the tenant's id, sub the user
id, jti the token's id, iat/nbf/exp, and its scopes and limits. Verification pins the
algorithm (only EdDSA, with the key object: never `none`, never an HMAC keyed by the
public key), allows 60 s of clock skew, and requires the audience to be the tenant the
key belongs to. Revocation is checked in the database on every request (a primary-key
read of the token's row), so it holds in every API process at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Connection, text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import AssetNotFound, IdempotencyKeyReused, InvalidRequest, NotFound
from ledger.intake import Submission, accept_transactions, sole_submission
from ledger.transaction_request import (
    MAX_BACKDATE_SECONDS,
    MAX_METADATA_BYTES,
    TransactionRequest,
)
from ledger.wallet_token_keys import LEEWAY_SECONDS, signing_key, verifying_key
from ledger.webhooks.secrets import SecretBox

ISSUER = "tally"
ALGORITHM = "EdDSA"
READ, SPEND, HOLD = "read", "spend", "hold"
# The scope sets a token may carry: reading always, and at most one way to move money.
SCOPE_SETS = (frozenset({READ}), frozenset({READ, SPEND}), frozenset({READ, HOLD}))
REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"]

INSERT_TOKEN = text(
    """
    INSERT INTO wallet_tokens (id, tenant_id, key_id, user_id, scopes, asset_codes,
                               max_amount, spend_limit, issued_by, expires_at)
    VALUES (:id, :tenant_id, :key_id, :user_id, :scopes, :asset_codes, :max_amount,
            :spend_limit, :issued_by, :expires_at)
    """
)
REVOKE = text(
    "UPDATE wallet_tokens SET revoked_at = coalesce(revoked_at, now())"
    " WHERE tenant_id = :tenant_id AND id = :id RETURNING id, user_id, revoked_at"
)
TOKEN_STATE = text(
    "SELECT revoked_at FROM wallet_tokens WHERE tenant_id = :tenant_id AND id = :id"
    " AND key_id = :kid AND user_id = :user_id"
)
ASSET_EXISTS = text(
    "SELECT EXISTS (SELECT 1 FROM assets WHERE tenant_id = :tenant_id AND code = :code)"
)
REVOKED_AT = text("SELECT revoked_at FROM wallet_tokens WHERE tenant_id = :tenant_id AND id = :id")
# Counts an amount against the token's spend limit, durably, in the intake's transaction:
# the row lock orders concurrent spends, each seeing what the one before it counted.
CHARGE = text(
    """
    UPDATE wallet_tokens SET spent = spent + :amount
    WHERE tenant_id = :tenant_id AND id = :id AND revoked_at IS NULL
      AND (spend_limit IS NULL OR spent + :amount <= spend_limit)
    RETURNING spent
    """
)


class WalletTokenNotFound(NotFound):
    code = "wallet_token_not_found"


class WalletTokenRefused(Exception):
    """A bearer token that does not authenticate; `code` says why (a 401's problem code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class WalletClaims:
    """What a verified wallet token lets its bearer do."""

    token_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: str
    scopes: frozenset[str]
    max_amount: int | None
    spend_limit: int | None
    asset_codes: frozenset[str] | None
    expires_at: datetime


def issue_wallet_token(
    work: UnitOfWork,
    box: SecretBox,
    tenant_id: uuid.UUID,
    *,
    user_id: str,
    scopes: list[str],
    ttl: int,
    max_amount: int | None = None,
    spend_limit: int | None = None,
    asset_codes: list[str] | None = None,
    actor: Actor,
) -> dict[str, Any]:
    """A new token for the user's app (`token`, `id`, `expires_at`); audited."""
    if frozenset(scopes) not in SCOPE_SETS:
        raise InvalidRequest(
            "invalid_scope", "scopes must be [read], [read, spend] or [read, hold]", field="scopes"
        )
    key = signing_key(work, box, tenant_id)
    token_id = uuid.uuid4()
    now = datetime.now(UTC).replace(microsecond=0)
    expires_at = now + timedelta(seconds=ttl)
    ordered = sorted(set(scopes))
    codes = sorted(set(asset_codes)) if asset_codes is not None else None
    work.connection.execute(
        INSERT_TOKEN,
        {
            "id": token_id,
            "tenant_id": tenant_id,
            "key_id": key.kid,
            "user_id": user_id,
            "scopes": ordered,
            "asset_codes": codes,
            "max_amount": max_amount,
            "spend_limit": spend_limit,
            "issued_by": actor.key_id,
            "expires_at": expires_at,
        },
    )
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": str(tenant_id),
        "sub": user_id,
        "jti": str(token_id),
        "iat": now,
        "nbf": now,
        "exp": expires_at,
        "scopes": ordered,
    }
    for name, value in (("max_amount", max_amount), ("spend_limit", spend_limit)):
        if value is not None:
            claims[name] = value
    if codes is not None:
        claims["asset_codes"] = codes
    token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    details = {"token_id": str(token_id), "user_id": user_id, "scopes": ordered, "ttl": ttl}
    audit.append_event(
        work.connection, tenant_id, actor, "wallet_token.issued", f"wallet:{user_id}", details
    )
    return {"token": token, "id": str(token_id), "expires_at": expires_at.isoformat()}


def revoke_wallet_token(
    work: UnitOfWork, tenant_id: uuid.UUID, token_id: uuid.UUID, *, actor: Actor
) -> dict[str, Any]:
    """Revoke a token: every request with it is refused from the commit on; audited."""
    row = work.connection.execute(REVOKE, {"tenant_id": tenant_id, "id": token_id}).first()
    if row is None:
        raise WalletTokenNotFound(f"no wallet token {token_id}")
    audit.append_event(
        work.connection,
        tenant_id,
        actor,
        "wallet_token.revoked",
        f"wallet:{row.user_id}",
        {"token_id": str(token_id)},
    )
    return {"id": str(row.id), "user_id": row.user_id, "revoked_at": row.revoked_at.isoformat()}


def looks_like_jwt(value: str) -> bool:
    """Whether a bearer credential has a JWT's shape (three dot-separated parts)."""
    return value.count(".") == 2 and not value.startswith("tally_")


def claimed_audience(token: str) -> tuple[uuid.UUID, str]:
    """The tenant (`aud`) and issuer (`iss`) a token claims, read before any verification:
    they only choose who verifies it (Tally's keys, or a merchant's registered issuer)."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        tenant_id = uuid.UUID(str(unverified["aud"]))
        iss = unverified["iss"]
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise _invalid("The wallet token is malformed.") from None
    if not isinstance(iss, str) or not iss:
        raise _invalid("The wallet token names no issuer.")
    return tenant_id, iss


def claimed_tenant(token: str) -> tuple[uuid.UUID, str]:
    """The tenant (`aud`) and `kid` a token claims, read before any verification: they
    only choose the key to verify it with. WalletTokenRefused when either is missing or
    the header names any algorithm but EdDSA."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
        tenant_id = uuid.UUID(str(unverified["aud"]))
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise _invalid("The wallet token is malformed.") from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
        raise _invalid("The wallet token is not signed with a Tally key.")
    return tenant_id, kid


def verify_wallet_token(conn: Connection, token: str) -> WalletClaims:
    """The claims of a token signed by its tenant's live key, not expired, not revoked.

    The connection must be bound to the tenant the token claims (`claimed_tenant`): the
    key is looked up among that tenant's alone, so a token whose audience is another
    tenant than its key's is refused."""
    tenant_id, kid = claimed_tenant(token)
    public_key = verifying_key(conn, tenant_id, kid)
    if public_key is None:
        raise _invalid("The wallet token's key is unknown.")
    claims = decode_claims(token, public_key, ALGORITHM, tenant_id, ISSUER, REQUIRED_CLAIMS)
    try:
        token_id = uuid.UUID(str(claims["jti"]))
    except ValueError:
        raise _invalid("The wallet token's id is malformed.") from None
    state = conn.execute(
        TOKEN_STATE,
        {"tenant_id": tenant_id, "id": token_id, "kid": kid, "user_id": str(claims["sub"])},
    ).first()
    if state is None:
        raise _invalid("The wallet token is unknown.")
    if state.revoked_at is not None:
        raise WalletTokenRefused("token_revoked", "The wallet token has been revoked.")
    codes = claims.get("asset_codes")
    return WalletClaims(
        token_id=token_id,
        tenant_id=tenant_id,
        user_id=str(claims["sub"]),
        scopes=frozenset(claims.get("scopes") or ()),
        max_amount=claims.get("max_amount"),
        spend_limit=claims.get("spend_limit"),
        asset_codes=frozenset(codes) if codes is not None else None,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


def decode_claims(
    token: str,
    key: Any,
    algorithm: str,
    tenant_id: uuid.UUID,
    issuer: str,
    required: list[str],
) -> dict[str, Any]:
    """A token's claims once its signature verifies with `key` under `algorithm` alone, its
    audience is the tenant, its issuer `issuer`, and its times hold (LEEWAY_SECONDS of
    skew): Tally's own tokens and a merchant issuer's alike. WalletTokenRefused otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=str(tenant_id),
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise WalletTokenRefused("token_expired", "The wallet token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise WalletTokenRefused(
            "token_not_yet_valid", "The wallet token is not valid yet."
        ) from None
    except jwt.PyJWTError:
        raise _invalid("The wallet token does not verify.") from None
    return claims


def charge_wallet_token(
    conn: Connection, tenant_id: uuid.UUID, token_id: uuid.UUID, amount: int
) -> None:
    """Count `amount` against the token's spend limit in the caller's transaction (the one
    recording the submission); 422 `over_spend_limit` when it would go past it, and
    WalletTokenRefused when the token was revoked since the request was authenticated."""
    params = {"tenant_id": tenant_id, "id": token_id, "amount": amount}
    if conn.execute(CHARGE, params).first() is None:
        revoked = conn.execute(REVOKED_AT, params).scalar()
        if revoked is not None:
            raise WalletTokenRefused("token_revoked", "The wallet token has been revoked.")
        raise InvalidRequest(
            "over_spend_limit", "This amount would go past the wallet token's spend limit."
        )


def accept_with_wallet_token(
    work: UnitOfWork,
    claims: WalletClaims,
    request: TransactionRequest,
    *,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
    max_backdate_seconds: int = MAX_BACKDATE_SECONDS,
) -> Submission:
    """Intake for one request of a wallet token, alone in its unit of work: a new
    submission counts its amount against the token's spend limit in the transaction that
    records it (422 `over_spend_limit` undoes both); a replay counts nothing.

    A reference id another user's transaction took is invisible here (row-level security),
    so intake finds neither a new row nor an old one: it is answered as the reuse it is,
    409 `idempotency_key_reused`, not as the unknown asset intake takes it for."""
    try:
        submission = sole_submission(
            accept_transactions(
                work,
                claims.tenant_id,
                [request],
                admin=False,
                max_metadata_bytes=max_metadata_bytes,
                max_backdate_seconds=max_backdate_seconds,
            )
        )
    except AssetNotFound:
        params = {"tenant_id": claims.tenant_id, "code": request.asset_code}
        if (
            request.asset_code is not None
            and work.connection.execute(ASSET_EXISTS, params).scalar()
        ):
            raise IdempotencyKeyReused(
                f"reference_id {request.reference_id!r} was used for a different request",
                field="reference_id",
            ) from None
        raise
    if not submission.replayed and request.amount is not None:
        charge_wallet_token(work.connection, claims.tenant_id, claims.token_id, request.amount)
    return submission


def _invalid(message: str) -> WalletTokenRefused:
    return WalletTokenRefused("invalid_wallet_token", message)
