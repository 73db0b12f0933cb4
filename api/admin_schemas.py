"""marshmallow schemas of the administration API: keys, the audit trail, wallet actions."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import cursor_field, storable_text
from api.schemas import AssetQuerySchema, WalletUpdateSchema
from ledger.vocabulary import Scope

MAX_REASON = 500


def _reason() -> fields.String:
    return storable_text(
        max_length=MAX_REASON, metadata={"description": "Why: recorded in the audit trail."}
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
    cursor = cursor_field(max_length=200)
    action = storable_text(max_length=100)


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
