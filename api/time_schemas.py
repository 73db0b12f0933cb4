"""marshmallow schemas of reads in ledger time: balances as of a moment (and known at
another), and statements (docs/api.md#balances-as-of-a-moment, #statements)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, fields, post_load, validate

from api.fields import asset_code_field, cursor_field
from api.system_account_schemas import SystemAccountQuerySchema
from ledger.statements import MAX_STATEMENT_PAGE
from ledger.vocabulary import AccountStatus, TransactionType

CSV = "text/csv"
# The CSV form of a statement: its columns, in order (docs/api.md#statements).
CSV_COLUMNS = (
    "effective_at",
    "recorded_at",
    "transaction_id",
    "type",
    "reference_id",
    "amount",
    "amount_decimal",
    "running_balance",
    "running_balance_decimal",
)
MOMENT = " (RFC 3339; a time without an offset is UTC)"


def moment(description: str, **kwargs: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": description + MOMENT}, **kwargs
    )


class AsOfQuerySchema(Schema):
    """`as_of` and `known_at`: what the ledger held at T, as known at K."""

    as_of = moment(
        "Count only the entries effective at or before this moment; without it, the"
        " balance now. Without `as_of`, `known_at` stands for both."
    )
    known_at = moment(
        "Count only the entries Tally had recorded by this moment (what was known then)."
    )

    @post_load
    def _as_of_known_at(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("as_of") is None and data.get("known_at") is not None:
            data["as_of"] = data["known_at"]
        return data


class BalanceAsOfQuerySchema(AsOfQuerySchema):
    asset_code = asset_code_field(required=True)


class SystemAccountsAsOfQuerySchema(AsOfQuerySchema, SystemAccountQuerySchema):
    pass


_CURRENT_ONLY = (
    " Current state only: absent from an as-of answer (holds, limits and statuses have no history)."
)


class BalanceAsOfSchema(Schema):
    """A wallet's balance now (with its holds and spendable funds) or as of a moment."""

    user_id = fields.String(required=True)
    asset_code = fields.String(required=True)
    balance = fields.Integer(
        required=True,
        metadata={"description": "Now, or counting the entries effective by `as_of`."},
    )
    decimal_places = fields.Integer(required=True)
    as_of = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "Null for the balance now."}
    )
    known_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "Null unless asked."}
    )
    pending = fields.Integer(metadata={"description": "Held by active holds." + _CURRENT_ONLY})
    credit_limit = fields.Integer(metadata={"description": _CURRENT_ONLY.strip()})
    available = fields.Integer(
        metadata={"description": "balance - pending + credit_limit." + _CURRENT_ONLY}
    )
    status = fields.String(
        metadata={"enum": list(AccountStatus), "description": _CURRENT_ONLY.strip()}
    )
    version = fields.Integer(metadata={"description": _CURRENT_ONLY.strip()})


class StatementQuerySchema(Schema):
    asset_code = asset_code_field(required=True)
    start = moment(
        "The period starts after this moment: its entries are those effective after `from`"
        " and at or before `to`; `opening_balance` is the balance as of `from`. Before `to`"
        " (`invalid_period` otherwise).",
        data_key="from",
        required=True,
    )
    end = moment("The period's end, inclusive; by default now.", data_key="to")
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_STATEMENT_PAGE), load_default=100)
    cursor = cursor_field(max_length=200)


class StatementEntrySchema(Schema):
    effective_at = fields.DateTime(required=True, metadata={"description": "When it counts."})
    recorded_at = fields.DateTime(
        required=True, metadata={"description": "When Tally recorded it."}
    )
    transaction_id = fields.UUID(required=True)
    type = fields.String(required=True, metadata={"enum": list(TransactionType)})
    reference_id = fields.String(required=True)
    amount = fields.Integer(required=True, metadata={"description": "Signed: credits > 0."})
    running_balance = fields.Integer(
        required=True, metadata={"description": "The balance after this entry, in this order."}
    )


class TypeTotalsSchema(Schema):
    credits = fields.Integer(required=True, metadata={"description": "Sum of credits (>= 0)."})
    debits = fields.Integer(
        required=True, metadata={"description": "Sum of debits, as a positive number."}
    )


class StatementSchema(Schema):
    """One page of a wallet's statement over `(from, to]`."""

    user_id = fields.String(required=True)
    asset_code = fields.String(required=True)
    decimal_places = fields.Integer(required=True)
    start = fields.DateTime(data_key="from", required=True)
    end = fields.DateTime(data_key="to", required=True, metadata={"description": "As resolved."})
    opening_balance = fields.Integer(
        required=True, metadata={"description": "The balance as of `from`."}
    )
    closing_balance = fields.Integer(
        required=True, metadata={"description": "The balance as of `to`."}
    )
    totals = fields.Dict(
        keys=fields.String(validate=validate.OneOf(list(TransactionType))),
        values=fields.Nested(TypeTotalsSchema),
        required=True,
        metadata={"description": "Per transaction type, over the whole period."},
    )
    page_opening_balance = fields.Integer(
        required=True, metadata={"description": "The running balance before this page."}
    )
    entries = fields.List(
        fields.Nested(StatementEntrySchema),
        required=True,
        metadata={"description": "In effective order: effective_at, then entry id."},
    )
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "Null on the last page."}
    )


def statement_content() -> dict[str, Any]:
    """The statement's 200: a JSON page, or with `Accept: text/csv` the whole period as CSV.
    (Both named here: a manual `content` replaces what `@blp.response` documents.)"""
    header = ",".join(CSV_COLUMNS)
    return {
        "application/json": {"schema": StatementSchema},
        CSV: {
            "schema": {
                "type": "string",
                "description": f"The whole period (not one page), header `{header}`; amounts"
                " in minor units, `*_decimal` in the asset's decimal places.",
            }
        },
    }
