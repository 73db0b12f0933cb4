"""marshmallow schemas of transaction submissions: the general `POST /transactions` (and
each item of a batch), the seed-compatible per-type routes, and the per-type rules of the
OpenAPI document (ledger/transaction_request.py enforces them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import (
    FullMatch,
    MinorUnits,
    asset_code_field,
    reference_id_field,
    storable_text,
    user_id_field,
    user_id_property,
)
from ledger.request_legs import MAX_LEGS, MAX_POSTINGS, SYSTEM_ACCOUNT
from ledger.transaction_request import (
    BUYER_TYPES,
    EXCHANGE_FIELDS,
    MAX_HOLD_SECONDS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_TEXT,
    NOT_OF_JOURNALS,
    ORIGINAL_TYPES,
    PAYOUT_FIELDS,
    SPLIT_TYPES,
    TO_USER_TYPES,
)
from ledger.vocabulary import HOLD_ACTIONS, SYSTEM_ACCOUNT_NAME, TransactionType

SYSTEM_ACCOUNT_PROPERTY = {"type": "string", "pattern": f"^{SYSTEM_ACCOUNT_NAME}$"}


def system_account_field(**kwargs: Any) -> fields.String:
    # marshmallow formats the message with str.format: the quantifier's braces are doubled.
    return fields.String(
        validate=FullMatch(SYSTEM_ACCOUNT, error="Must match @[a-z0-9_]{{1,32}}."), **kwargs
    )


class JudgedByLedger(fields.List):
    """A list the document describes item by item, loaded as it was sent: the ledger judges
    its shape (ledger/request_legs.py), so every fault of it answers one stable code naming
    the item and the fault (`invalid_splits`, `invalid_postings`), never a mix of codes."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return value


class LegSchema(Schema):
    """One destination of a split: a wallet or a system account, and its share."""

    class Meta:
        json_schema_rules: ClassVar[dict[str, Any]] = {
            "oneOf": [{"required": ["to_user_id"]}, {"required": ["to_account"]}]
        }

    to_user_id = user_id_field(metadata={"description": "A wallet; not the paying one."})
    to_account = system_account_field(metadata={"description": "A system account, `@name`."})
    amount = MinorUnits(required=True)


# Either end of a posting: a wallet or a system account.
_ACCOUNT = {
    "anyOf": [user_id_property("A wallet."), SYSTEM_ACCOUNT_PROPERTY],
    "description": "A wallet (its user id) or a system account (`@name`); `from` and `to` differ.",
}


class PostingSchema(Schema):
    """One line of a journal entry: an amount of one asset from one account to another."""

    source = fields.String(data_key="from", required=True, metadata=_ACCOUNT)
    target = fields.String(data_key="to", required=True, metadata=_ACCOUNT)
    asset_code = asset_code_field(required=True)
    amount = MinorUnits(required=True)


def splits_field(description: str) -> JudgedByLedger:
    return JudgedByLedger(
        fields.Nested(LegSchema),
        metadata={
            "minItems": 1,
            "maxItems": MAX_LEGS,
            "description": f"1 to {MAX_LEGS} legs, each naming `to_user_id` or `to_account`,"
            " each destination once, their amounts summing to `amount` (`invalid_splits`)."
            f" {description}",
        },
    )


class SubmissionSchema(Schema):
    """Fields every submission shares."""

    user_id = user_id_field(required=True)
    asset_code = asset_code_field(required=True)
    amount = MinorUnits(required=True)
    reference_id = reference_id_field(required=True)
    effective_at = fields.AwareDateTime(
        metadata={
            "description": "When the movement counts for reporting (balances as of a time,"
            " statements), if not when it is applied: at most 60 s ahead"
            " (`effective_at_in_future`), at most TALLY_MAX_BACKDATE_SECONDS (30 days) back"
            " (`effective_at_too_old`), after the tenant's closed periods (`period_closed`)."
            " Funds and status are judged when it is applied, against current balances."
        }
    )
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
    splits = splits_field("Instead of `@revenue`, which a leg may name.")


def _fields_by_type() -> list[dict[str, Any]]:
    """Which fields each type takes (ledger/transaction_request.py), as portable JSON Schema:
    OpenAPI 3.0 has no if/then, so each rule reads "type is not one of these, or ..."."""
    every = set(TransactionType)
    journal = {TransactionType.JOURNAL}
    rules: list[dict[str, Any]] = []

    def when(types: Iterable[str], then: dict[str, Any]) -> None:
        others = {"properties": {"type": {"not": {"enum": sorted(map(str, types))}}}}
        rules.append({"anyOf": [others, then]})

    def absent(*names: str) -> dict[str, Any]:
        return {"not": {"anyOf": [{"required": [name]} for name in names]}}

    def at_most_one(*names: str) -> dict[str, Any]:
        pairs = [[a, b] for i, a in enumerate(names) for b in names[i + 1 :]]
        return {"not": {"anyOf": [{"required": pair} for pair in pairs]}}

    when(every - HOLD_ACTIONS - journal, {"required": ["user_id", "asset_code", "amount"]})
    when(HOLD_ACTIONS, absent("user_id", "asset_code", "to_user_id"))
    when({TransactionType.VOID}, absent("amount"))
    when(every - {TransactionType.ADJUSTMENT}, {"properties": {"amount": {"minimum": 1}}})
    when(ORIGINAL_TYPES, {"required": ["original_transaction_id"]})
    when(every - ORIGINAL_TYPES, absent("original_transaction_id"))
    # A transfer pays one wallet or splits: exactly one of the two.
    when(
        {TransactionType.TRANSFER},
        {"oneOf": [{"required": ["to_user_id"]}, {"required": ["splits"]}]},
    )
    when(every - TO_USER_TYPES - BUYER_TYPES, absent("to_user_id"))
    when({TransactionType.HOLD}, at_most_one("to_user_id", "to_account", "splits"))
    when(every - {TransactionType.HOLD}, absent("to_account"))
    when(every - SPLIT_TYPES, absent("splits"))
    when(every - {TransactionType.HOLD}, absent("expires_in", "expires_at"))
    when({TransactionType.HOLD}, {"not": {"required": ["expires_in", "expires_at"]}})
    when({TransactionType.ADJUSTMENT, *journal}, {"required": ["reason"]})
    when(every - {TransactionType.PAYOUT}, absent(*PAYOUT_FIELDS))
    when({TransactionType.EXCHANGE}, {"required": list(EXCHANGE_FIELDS)})
    when(every - {TransactionType.EXCHANGE}, absent(*EXCHANGE_FIELDS))
    when(journal, {"required": ["postings"], **absent(*NOT_OF_JOURNALS)})
    when(every - journal, absent("postings"))
    return rules


class TransactionSchema(SubmissionSchema):
    """`POST /transactions`: any type, with the fields that type needs.

    A capture or void names its hold in `original_transaction_id` (and a capture may give
    an `amount`, by default the whole hold); a journal names only its `postings` and a
    `reason`; every other type names a wallet, an asset and an amount.
    """

    class Meta:
        json_schema_rules: ClassVar[dict[str, Any]] = {"allOf": _fields_by_type()}

    type = fields.String(required=True, validate=validate.OneOf(list(TransactionType)))
    user_id = user_id_field(metadata={"description": "Every type but capture, void and journal."})
    asset_code = asset_code_field(
        metadata={"description": "Every type but capture, void and journal."}
    )
    amount = MinorUnits(
        signed=True,
        metadata={
            "description": "Integer amount in the asset's smallest unit (e.g. cents). Negative"
            " only for adjustments; optional for a capture (default: the sum of its `splits`,"
            " or the whole hold); not for a void or a journal."
        },
    )
    to_user_id = user_id_field(
        metadata={
            "description": "Transfers: the target (or `splits`); holds: where a capture pays to"
            " (or `to_account`, or `splits`); exchanges: the buyer (default: `user_id`)."
        }
    )
    original_transaction_id = fields.UUID(
        metadata={"description": "Refunds: the spend or capture; captures and voids: the hold."}
    )
    payment_method = storable_text(max_length=MAX_TEXT)
    bonus_type = storable_text(max_length=MAX_TEXT)
    item_id = storable_text(max_length=MAX_TEXT)
    reason = storable_text(
        max_length=MAX_TEXT, metadata={"description": "Adjustments and journals: required."}
    )
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
    splits = splits_field(
        "Spends (instead of `@revenue`), transfers (instead of `to_user_id`), holds (the"
        " capture's destinations), captures (`amount` optional: the legs' sum), refunds (how"
        " much each leg of the original gives back). Never the paying wallet."
    )
    to_account = system_account_field(
        metadata={
            "description": "Holds: a system account the capture pays to (`@payouts`), instead"
            " of `to_user_id` (`unknown_system_account` if the tenant has none of that name)."
        }
    )
    payout_method = storable_text(max_length=MAX_TEXT, metadata={"description": "Payouts."})
    destination = storable_text(
        max_length=MAX_TEXT,
        metadata={"description": "Payouts: where the money goes, e.g. a masked IBAN."},
    )
    to_asset_code = asset_code_field(
        metadata={"description": "Exchanges: the asset bought; not `asset_code` (`same_asset`)."}
    )
    to_amount = MinorUnits(metadata={"description": "Exchanges: how much of it is bought."})
    postings = JudgedByLedger(
        fields.Nested(PostingSchema),
        metadata={
            "minItems": 1,
            "maxItems": MAX_POSTINGS,
            "description": f"Journals: 1 to {MAX_POSTINGS} postings (`invalid_postings`).",
        },
    )

    # Run beside the field errors, so one answer names every missing field; what counts
    # as missing is what the client did not send at all (an invalid value has its own error).
    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _fields_of_type(self, data: dict[str, Any], original: Any, **_: Any) -> None:
        kind = data.get("type")
        walletless = kind in HOLD_ACTIONS or kind == TransactionType.JOURNAL
        if not walletless and isinstance(original, dict):
            missing = [name for name in ("user_id", "asset_code", "amount") if name not in original]
            if missing:
                raise ValidationError(
                    {name: ["Missing data for required field."] for name in missing}
                )
        amount = data.get("amount")
        if kind != TransactionType.ADJUSTMENT and isinstance(amount, int) and amount < 0:
            raise ValidationError("Must be positive for this type.", "amount")


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
