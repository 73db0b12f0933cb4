"""marshmallow schemas of the administration API: keys, the audit trail, wallet actions."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.schemas import AssetQuerySchema, WalletUpdateSchema, storable
from ledger.vocabulary import Scope

MAX_REASON = 500


def _reason() -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=MAX_REASON), storable],
        metadata={"description": "Why: recorded in the audit trail."},
    )


class WalletActionSchema(AssetQuerySchema):
    """Freeze or unfreeze one of a user's wallets."""

    reason = _reason()


class WalletChangeSchema(WalletUpdateSchema):
    reason = _reason()


class ApiKeyCreateSchema(Schema):
    scope = fields.String(required=True, validate=validate.OneOf(list(Scope)))


class ApiKeySchema(Schema):
    id = fields.UUID(required=True)
    prefix = fields.String(required=True, metadata={"description": "The key's first characters."})
    scope = fields.String(required=True, metadata={"enum": list(Scope)})
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "To the minute."}
    )
    revoked_at = fields.DateTime(required=True, allow_none=True)


class ApiKeyWithSecretSchema(ApiKeySchema):
    api_key = fields.String(required=True, metadata={"description": "Shown only this once."})


class AuditQuerySchema(Schema):
    limit = fields.Integer(validate=validate.Range(min=1, max=200), load_default=50)
    cursor = fields.String(validate=validate.Length(max=200))
    action = fields.String(validate=[validate.Length(min=1, max=100), storable])


class AuditEventSchema(Schema):
    id = fields.String(required=True)
    occurred_at = fields.DateTime(required=True)
    actor = fields.String(
        required=True, metadata={"description": "`key:<prefix>`, or `operator:cli`."}
    )
    actor_key_id = fields.UUID(required=True, allow_none=True)
    action = fields.String(required=True, metadata={"description": "e.g. `wallet.frozen`."})
    target = fields.String(required=True, metadata={"description": "e.g. `wallet:alice/EUR`."})
    details = fields.Dict(required=True)


class AuditPageSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
