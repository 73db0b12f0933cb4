"""marshmallow schemas of wallet tokens: issuing one, its answer, revoking, the JWKS."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import MinorUnits, asset_code_field, user_id_field
from ledger.wallet_token_keys import MAX_TTL_SECONDS

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
