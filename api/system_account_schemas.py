"""marshmallow schemas of the system-account routes: defining one, the listing with balances.

A system account's journal answers as a wallet's (api/schemas.py `HistorySchema`).
"""

from __future__ import annotations

from marshmallow import Schema, fields

from api.fields import FullMatch, asset_code_field, storable_text
from ledger.system_accounts import MAX_DESCRIPTION, NAME

NAME_RULE = "`@` and 1-32 of `a-z`, `0-9` and `_`"


class SystemAccountCreateSchema(Schema):
    """Define a system account (admin keys only)."""

    name = fields.String(
        required=True,
        validate=FullMatch(NAME, error="Must be @ and 1-32 of a-z, 0-9 and _."),
        metadata={"description": f"{NAME_RULE}; not a built-in's name nor one defined already."},
    )
    description = storable_text(
        max_length=MAX_DESCRIPTION,
        min_length=0,
        allow_none=True,
        metadata={"description": "What the account is for."},
    )


# Output schemas document what the views render: `required` marks the fields every answer
# carries, and unknown fields are refused (`additionalProperties: false`).


class SystemAccountSchema(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


class SystemAccountQuerySchema(Schema):
    asset_code = asset_code_field(metadata={"description": "Only this asset's accounts."})


class SystemAccountBalanceSchema(Schema):
    """A system account in one asset."""

    name = fields.String(required=True)
    builtin = fields.Boolean(
        required=True, metadata={"description": "One of the six every tenant has."}
    )
    description = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "A built-in's fixed summary, or what the tenant gave."},
    )
    asset_code = fields.String(required=True)
    balance = fields.Integer(
        required=True,
        metadata={
            "description": "In the asset's smallest unit; may be negative (no floor). With"
            " `as_of`, counting the entries effective by then."
        },
    )
    as_of = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "Null for the balance now."}
    )
    known_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "Null unless asked."}
    )
