"""marshmallow schemas: request validation and the OpenAPI document come from these."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import asset_code_field, cursor_field, storable_text
from ledger.assets import MAX_ASSET_NAME, MAX_DECIMAL_PLACES
from ledger.money import MAX_AMOUNT
from ledger.transaction_request import MAX_TEXT
from ledger.vocabulary import (
    AccountStatus,
    HoldStatus,
    TransactionStatus,
    TransactionType,
)


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


class SplitLegSchema(Schema):
    """One leg of a split as recorded: its destination, its amount, and once applied the
    destination's balance after it."""

    to_user_id = fields.String(metadata={"description": "A wallet (or `to_account`)."})
    to_account = fields.String(metadata={"description": "A system account (or `to_user_id`)."})
    amount = fields.Integer(required=True)
    balance_after = fields.Integer(
        allow_none=True,
        metadata={"description": "The destination's balance after the leg; null until applied."},
    )


class PostingOutSchema(Schema):
    """One posting of a journal entry."""

    source = fields.String(data_key="from", required=True)
    target = fields.String(data_key="to", required=True)
    asset_code = fields.String(required=True)
    amount = fields.Integer(required=True)


class WalletAfterSchema(Schema):
    user_id = fields.String(required=True)
    asset_code = fields.String(required=True)
    sequence = fields.Integer(
        required=True,
        metadata={
            "description": "The wallet's version after it: 1, 2, 3, ... with no gap per"
            " wallet, so a receiver that misses one can tell (docs/webhooks.md)."
        },
    )
    balance_after = fields.Integer(required=True)


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
    wallets = fields.List(
        fields.Nested(WalletAfterSchema),
        metadata={
            "description": "Applied ones: each wallet it moved, its sequence and balance"
            " after it (by asset code, then user id); absent until applied."
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
    splits = fields.List(
        fields.Nested(SplitLegSchema),
        allow_none=True,
        metadata={"description": "A split's legs: as requested until applied, then as applied."},
    )
    to_account = fields.String(
        allow_none=True,
        metadata={"description": "Holds and their captures: the system account paid to."},
    )
    payout_method = fields.String(allow_none=True, metadata={"description": "Payouts."})
    destination = fields.String(allow_none=True, metadata={"description": "Payouts."})
    to_asset_code = fields.String(
        allow_none=True, metadata={"description": "Exchanges: the asset bought."}
    )
    to_amount = fields.Integer(
        allow_none=True, metadata={"description": "Exchanges: how much of it was bought."}
    )
    rate = fields.String(
        allow_none=True,
        metadata={"description": "Exchanges: `to_amount` per unit of `amount`, as a decimal."},
    )
    postings = fields.List(
        fields.Nested(PostingOutSchema),
        allow_none=True,
        metadata={"description": "Journals: the postings."},
    )
    metadata = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    effective_at = fields.DateTime(
        metadata={
            "description": "When the submission asked the movement to count for reporting;"
            " absent when it counts from its application (`completed_at`)."
        }
    )


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
