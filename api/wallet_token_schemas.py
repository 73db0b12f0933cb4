"""marshmallow schemas of wallet tokens: issuing one, its answer, revoking, the JWKS; a
merchant's own issuers; the CORS origins."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import MinorUnits, asset_code_field, user_id_field
from ledger.cors_origins import MAX_ORIGIN_LENGTH, MAX_ORIGINS
from ledger.wallet_token_issuers import ALGORITHMS, MAX_KEYS
from ledger.wallet_token_keys import MAX_TTL_SECONDS
from ledger.wallet_tokens import ISSUER

MIN_TTL_SECONDS = 60
DEFAULT_TTL_SECONDS = 900
SCOPE_SETS = [["read"], ["read", "spend"], ["read", "hold"]]


class WalletTokenCreateSchema(Schema):
    user_id = user_id_field(required=True, metadata={"description": "The wallet's owner."})
    scopes = fields.List(
        fields.String(validate=validate.OneOf(["read", "spend", "hold"])),
        load_default=["read"],
        validate=validate.Length(min=1, max=2),
        metadata={"description": "`[read]`, `[read, spend]` or `[read, hold]`."},
    )
    ttl = fields.Integer(
        strict=True,
        load_default=DEFAULT_TTL_SECONDS,
        validate=validate.Range(min=MIN_TTL_SECONDS, max=MAX_TTL_SECONDS),
        metadata={"description": "Seconds the token lives."},
    )
    max_amount = MinorUnits(metadata={"description": "The most one transaction may move."})
    spend_limit = MinorUnits(
        metadata={"description": "The most all its transactions may move, over its life."}
    )
    asset_codes = fields.List(
        asset_code_field(),
        validate=validate.Length(min=1, max=50),
        metadata={"description": "The only assets it may touch; any when absent."},
    )


class WalletTokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "The JWT, shown only now."})
    id = fields.UUID(required=True)
    expires_at = fields.DateTime(required=True)


class WalletTokenRevokedSchema(Schema):
    id = fields.UUID(required=True)
    user_id = fields.String(required=True)
    revoked_at = fields.DateTime(required=True)


class JwkSchema(Schema):
    kty = fields.String(required=True, metadata={"enum": ["OKP"]})
    crv = fields.String(required=True, metadata={"enum": ["Ed25519"]})
    x = fields.String(required=True, metadata={"description": "The public key, base64url."})
    kid = fields.String(required=True)
    alg = fields.String(required=True, metadata={"enum": ["EdDSA"]})
    use = fields.String(required=True, metadata={"enum": ["sig"]})


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


class UploadedJwksSchema(Schema):
    keys = fields.List(
        fields.Dict(),
        required=True,
        validate=validate.Length(min=1, max=MAX_KEYS),
        metadata={"description": "Public JWKs, each with a `kid`; never a private key."},
    )


class WalletTokenIssuerCreateSchema(Schema):
    iss = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), validate.NoneOf([ISSUER])],
        metadata={"description": "The `iss` its tokens carry (not `tally`)."},
    )
    algorithms = fields.List(
        fields.String(validate=validate.OneOf(ALGORITHMS)),
        required=True,
        validate=validate.Length(min=1, max=len(ALGORITHMS)),
        metadata={"description": "The algorithms its tokens may be signed with."},
    )
    jwks = fields.Nested(UploadedJwksSchema, required=True)


class WalletTokenIssuerSchema(Schema):
    id = fields.UUID(required=True)
    iss = fields.String(required=True)
    algorithms = fields.List(fields.String(metadata={"enum": list(ALGORITHMS)}), required=True)
    jwks = fields.Nested(UploadedJwksSchema, required=True)
    created_at = fields.DateTime(required=True)


class CorsOriginsSchema(Schema):
    origins = fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_ORIGIN_LENGTH)),
        required=True,
        metadata={
            "description": f"At most {MAX_ORIGINS} origins (`scheme://host[:port]`) its"
            " wallet tokens may be used from in a browser."
        },
    )
