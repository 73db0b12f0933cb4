"""marshmallow schemas: request validation and the OpenAPI document come from these."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import (
    MinorUnits,
    asset_code_field,
    cursor_field,
    reference_id_field,
    storable_text,
    user_id_field,
)
from ledger.assets import MAX_ASSET_NAME, MAX_DECIMAL_PLACES
from ledger.money import MAX_AMOUNT
from ledger.transaction_request import (
    MAX_HOLD_SECONDS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_TEXT,
    ORIGINAL_TYPES,
    TO_USER_TYPES,
)
from ledger.vocabulary import (
    HOLD_ACTIONS,
    AccountStatus,
    HoldStatus,
    TransactionStatus,
    TransactionType,
)


class SubmissionSchema(Schema):
    """Fields every submission shares."""

    user_id = user_id_field(required=True)
    asset_code = asset_code_field(required=True)
    amount = MinorUnits(required=True)
    reference_id = reference_id_field(required=True)
    metadata = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={
            "description": f"Any JSON object of at most {MAX_METADATA_BYTES} bytes (compact"
            f" encoding), nested at most {MAX_METADATA_DEPTH} levels, with no NUL in any string"
            " (`invalid_metadata`, `metadata_too_large`)."
        },
    )


class TopupSchema(SubmissionSchema):
    payment_method = storable_text(max_length=MAX_TEXT)


class BonusSchema(SubmissionSchema):
    bonus_type = storable_text(max_length=MAX_TEXT)


class SpendSchema(SubmissionSchema):
    item_id = storable_text(max_length=MAX_TEXT)


def _fields_by_type() -> list[dict[str, Any]]:
    """Which fields each type takes (ledger/transaction_request.py), as portable JSON Schema:
    OpenAPI 3.0 has no if/then, so each rule reads "type is not one of these, or ..."."""
    every = set(TransactionType)
    rules: list[dict[str, Any]] = []

    def when(types: Iterable[str], then: dict[str, Any]) -> None:
        others = {"properties": {"type": {"not": {"enum": sorted(map(str, types))}}}}
        rules.append({"anyOf": [others, then]})

    def absent(*names: str) -> dict[str, Any]:
        return {"not": {"anyOf": [{"required": [name]} for name in names]}}

    when(every - HOLD_ACTIONS, {"required": ["user_id", "asset_code", "amount"]})
    when(HOLD_ACTIONS, absent("user_id", "asset_code", "to_user_id"))
    when({TransactionType.VOID}, absent("amount"))
    when(every - {TransactionType.ADJUSTMENT}, {"properties": {"amount": {"minimum": 1}}})
    when(ORIGINAL_TYPES, {"required": ["original_transaction_id"]})
    when(every - ORIGINAL_TYPES, absent("original_transaction_id"))
    when({TransactionType.TRANSFER}, {"required": ["to_user_id"]})
    when(every - TO_USER_TYPES, absent("to_user_id"))
    when(every - {TransactionType.HOLD}, absent("expires_in", "expires_at"))
    when({TransactionType.HOLD}, {"not": {"required": ["expires_in", "expires_at"]}})
    when({TransactionType.ADJUSTMENT}, {"required": ["reason"]})
    return rules


class TransactionSchema(SubmissionSchema):
    """`POST /transactions`: any type, with the fields that type needs.

    A capture or void names its hold in `original_transaction_id` (and a capture may give
    an `amount`, by default the whole hold); every other type names a wallet, an asset and
    an amount.
    """

    class Meta:
        json_schema_rules: ClassVar[dict[str, Any]] = {"allOf": _fields_by_type()}

    type = fields.String(required=True, validate=validate.OneOf(list(TransactionType)))
    user_id = user_id_field(metadata={"description": "Every type but capture and void."})
    asset_code = asset_code_field(metadata={"description": "Every type but capture and void."})
    amount = MinorUnits(
        signed=True,
        metadata={
            "description": "Integer amount in the asset's smallest unit (e.g. cents). Negative"
            " only for adjustments; optional for a capture (default: the whole hold); not for"
            " a void."
        },
    )
    to_user_id = user_id_field(
        metadata={"description": "Transfers: the target; holds: where a capture pays to."}
    )
    original_transaction_id = fields.UUID(
        metadata={"description": "Refunds: the spend or capture; captures and voids: the hold."}
    )
    payment_method = storable_text(max_length=MAX_TEXT)
    bonus_type = storable_text(max_length=MAX_TEXT)
    item_id = storable_text(max_length=MAX_TEXT)
    reason = storable_text(max_length=MAX_TEXT)
    expires_in = fields.Integer(
        strict=True,
        validate=validate.Range(1, MAX_HOLD_SECONDS),
        metadata={"description": "Holds: seconds until the hold expires (default 7 days)."},
    )
    expires_at = fields.AwareDateTime(
        metadata={
            "description": "Holds: when the hold expires, in the future and at most 30 days"
            " ahead (`invalid_expiry`)."
        }
    )

    # Run beside the field errors, so one answer names every missing field; what counts
    # as missing is what the client did not send at all (an invalid value has its own error).
    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _fields_of_type(self, data: dict[str, Any], original: Any, **_: Any) -> None:
        kind = data.get("type")
        if kind not in HOLD_ACTIONS and isinstance(original, dict):
            missing = [name for name in ("user_id", "asset_code", "amount") if name not in original]
            if missing:
                raise ValidationError(
                    {name: ["Missing data for required field."] for name in missing}
                )
        amount = data.get("amount")
        if kind != TransactionType.ADJUSTMENT and isinstance(amount, int) and amount < 0:
            raise ValidationError("Must be positive for this type.", "amount")


class WaitQuerySchema(Schema):
    wait = fields.Integer(
        validate=validate.Range(min=0, max=30),
        load_default=0,
        metadata={"description": "Seconds (0-30) to hold the answer until the outcome is final."},
    )


class ReferenceQuerySchema(Schema):
    # Any reference id ever stored is found, also one from before the reference-id rule:
    # only what no stored id can hold (NUL) is refused.
    reference_id = storable_text(max_length=MAX_TEXT, required=True)


# Output schemas only document what the views render (they return JSON already rendered):
# `required` marks the fields every answer carries, and marshmallow's default of refusing
# unknown fields becomes `additionalProperties: false`, so the document is exact.


class ResultSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)


class HoldSchema(Schema):
    """The state of a hold, on its transaction."""

    status = fields.String(
        required=True,
        metadata={
            "enum": list(HoldStatus),
            "description": "`held` until the first capture, void or expiry; then final.",
        },
    )
    amount = fields.Integer(required=True, metadata={"description": "The reserved amount."})
    captured_amount = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "What the capture moved; null unless captured."},
    )
    expires_at = fields.DateTime(
        required=True,
        metadata={"description": "When the hold expires (or expired) unless captured or voided."},
    )
    captured_by = fields.UUID(
        required=True,
        allow_none=True,
        metadata={"description": "The capture transaction; null unless captured."},
    )
    voided_by = fields.UUID(
        required=True,
        allow_none=True,
        metadata={"description": "The void transaction; null unless voided."},
    )


_OF_HOLD = " A capture or void of an unknown hold has none."


class TransactionOutSchema(Schema):
    id = fields.UUID(required=True)
    type = fields.String(required=True, metadata={"enum": list(TransactionType)})
    status = fields.String(required=True, metadata={"enum": list(TransactionStatus)})
    reference_id = fields.String(required=True)
    user_id = fields.String(
        required=True, allow_none=True, metadata={"description": "The wallet." + _OF_HOLD}
    )
    to_user_id = fields.String(
        metadata={
            "description": "Transfers: the target; holds and captures: the destination;"
            " refunds of a capture that paid a wallet: that wallet, which pays the refund."
        }
    )
    asset_code = fields.String(
        required=True, allow_none=True, metadata={"description": "The asset." + _OF_HOLD}
    )
    amount = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "Null only for a capture of the whole hold or a void until it is"
            " applied (then the amount captured or released); a rejected one stays null."
        },
    )
    result = fields.Nested(
        ResultSchema,
        required=True,
        allow_none=True,
        metadata={"description": "Why the ledger rejected or failed it; null otherwise."},
    )
    balance_after = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "The wallet's balance after it; null until applied, and always null"
            " for holds and voids (they change `pending`, not the balance)."
        },
    )
    to_balance_after = fields.Integer(
        allow_none=True,
        metadata={
            "description": "With `to_user_id`: the target's balance after it; null until"
            " applied, and always null for holds."
        },
    )
    original_transaction_id = fields.UUID(
        metadata={"description": "Refunds: the spend or capture; captures and voids: the hold."}
    )
    expires_at = fields.DateTime(
        metadata={"description": "Holds only: when the hold expires, as set at acceptance."}
    )
    hold = fields.Nested(
        HoldSchema,
        allow_none=True,
        metadata={"description": "Holds only: the hold's state; null unless applied."},
    )
    payment_method = fields.String()
    bonus_type = fields.String()
    item_id = fields.String()
    reason = fields.String()
    metadata = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)


class AssetQuerySchema(Schema):
    asset_code = asset_code_field(required=True)


class HistoryQuerySchema(AssetQuerySchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=200), load_default=50)
    cursor = cursor_field(max_length=200)


class BalanceSchema(Schema):
    user_id = fields.String(required=True)
    asset_code = fields.String(required=True)
    balance = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    credit_limit = fields.Integer(required=True)
    available = fields.Integer(required=True)
    decimal_places = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(AccountStatus)})
    version = fields.Integer(required=True)


class HistoryItemSchema(Schema):
    transaction_id = fields.UUID(required=True)
    type = fields.String(required=True, metadata={"enum": list(TransactionType)})
    reference_id = fields.String(required=True)
    amount = fields.Integer(required=True)
    balance_after = fields.Integer(required=True)
    version = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class HistorySchema(Schema):
    items = fields.List(fields.Nested(HistoryItemSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "Null on the last page."}
    )


class HoldsQuerySchema(HistoryQuerySchema):
    status = fields.String(
        validate=validate.OneOf(list(HoldStatus)),
        metadata={"description": "Only the holds in this state."},
    )


class HoldPageSchema(Schema):
    items = fields.List(
        fields.Nested(TransactionOutSchema),
        required=True,
        metadata={"description": "Applied holds, newest first, each with its `hold` state."},
    )
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "Null on the last page."}
    )


class WalletUpdateSchema(Schema):
    """Admin keys only: change a wallet's status or credit limit."""

    asset_code = asset_code_field(required=True)
    status = fields.String(validate=validate.OneOf(list(AccountStatus)))
    credit_limit = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_AMOUNT))


class AssetSchema(Schema):
    code = asset_code_field(required=True)
    name = storable_text(max_length=MAX_ASSET_NAME, required=True)
    decimal_places = fields.Integer(
        strict=True, required=True, validate=validate.Range(0, MAX_DECIMAL_PLACES)
    )
    # Required in answers only: OpenAPI ignores `required` on a readOnly field in requests.
    created_at = fields.DateTime(dump_only=True, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "degraded"]})
    database = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    broker = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})


class ProblemSchema(Schema):
    """RFC 9457 problem details: the body of every error (`application/problem+json`)."""

    type = fields.String(required=True, metadata={"format": "uri"})
    title = fields.String(required=True)
    status = fields.Integer(required=True, metadata={"description": "The HTTP status."})
    detail = fields.String(required=True, metadata={"description": "For people, not programs."})
    code = fields.String(
        required=True,
        metadata={"pattern": "^[a-z][a-z0-9_]*$", "description": "Stable: branch on this."},
    )
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Messages per invalid field (a nested field nests them)."},
    )
    instance = fields.String(metadata={"description": "The path of the request."})


MAX_BATCH_ITEMS = 1000


class TransactionBatchSchema(Schema):
    """`POST /transactions/batch`: up to 1,000 items, each shaped like `POST /transactions`."""

    # Raw items: each is validated on its own, so one bad item cannot reject its neighbours.
    transactions = fields.List(
        fields.Raw(metadata={"type": "object", "description": "A POST /transactions body."}),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "maxItems": MAX_BATCH_ITEMS,
            "description": f"1 to {MAX_BATCH_ITEMS} transactions, applied in this order"
            " (more is `413 batch_too_large`).",
        },
    )


class ItemErrorSchema(Schema):
    code = fields.String(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String())


class BatchItemResultSchema(Schema):
    index = fields.Integer(
        required=True, metadata={"description": "Position of the item in the request."}
    )
    status = fields.Integer(
        required=True,
        metadata={"description": "The status POST /transactions would have answered."},
    )
    outcome = fields.String(required=True, metadata={"enum": ["accepted", "replayed", "error"]})
    transaction = fields.Nested(
        TransactionOutSchema, metadata={"description": "Accepted and replayed items."}
    )
    error = fields.Nested(ItemErrorSchema, metadata={"description": "Refused items."})


class TransactionBatchResultSchema(Schema):
    accepted = fields.Integer(required=True)
    replayed = fields.Integer(required=True)
    errors = fields.Integer(required=True)
    results = fields.List(fields.Nested(BatchItemResultSchema), required=True)
