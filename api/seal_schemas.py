"""marshmallow schemas of the seals listing (ledger/seals.py, docs/design.md#tamper-evidence)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import cursor_field


class SealQuerySchema(Schema):
    limit = fields.Integer(validate=validate.Range(min=1, max=200), load_default=50)
    cursor = cursor_field(max_length=200)


class SealSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "Ascends with time."})
    tenant_id = fields.UUID(required=True)
    sealed_at = fields.DateTime(required=True)
    entries_through = fields.Integer(
        required=True, metadata={"description": "The highest journal entry id the seal covers."}
    )
    account_count = fields.Integer(
        required=True, metadata={"description": "How many accounts' chain heads the root covers."}
    )
    root = fields.String(
        required=True,
        metadata={
            "description": "The Merkle root of the accounts' chain heads, ordered by account"
            " id (SHA-256, 64 hexadecimal digits).",
            "pattern": "^[0-9a-f]{64}$",
        },
    )


class SealPageSchema(Schema):
    seals = fields.List(fields.Nested(SealSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
