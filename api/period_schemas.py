"""marshmallow schemas of ledger time: period closes and the reports (trial balance,
movements)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import asset_code_field

MONEY = "Integer amount in the asset's smallest unit."


def _moment(description: str, **kwargs: object) -> fields.AwareDateTime:
    """An RFC 3339 time with its offset (`Z` or `+01:00`); one without is refused."""
    return fields.AwareDateTime(metadata={"description": description}, **kwargs)  # type: ignore[arg-type]


class PeriodCloseSchema(Schema):
    through = _moment(
        "Close everything effective at or before this time: at least 60 seconds in the past,"
        " later than the last close.",
        required=True,
    )


class WalletsLineSchema(Schema):
    balance = fields.Integer(required=True, metadata={"description": MONEY})
    accounts = fields.Integer(required=True, metadata={"description": "How many wallets."})


class SystemAccountLineSchema(Schema):
    name = fields.String(required=True, metadata={"description": "e.g. `@topup`."})
    balance = fields.Integer(required=True, metadata={"description": MONEY})


class TotalLineSchema(Schema):
    balance = fields.Integer(
        required=True, metadata={"description": "Wallets plus system accounts: always 0."}
    )


class TrialBalanceLinesSchema(Schema):
    wallets = fields.Nested(WalletsLineSchema, required=True)
    system_accounts = fields.List(fields.Nested(SystemAccountLineSchema), required=True)
    total = fields.Nested(TotalLineSchema, required=True)


class CloseSummarySchema(TrialBalanceLinesSchema):
    entries = fields.Integer(
        required=True, metadata={"description": "Entries of the asset effective by `through`."}
    )
    entries_in_period = fields.Integer(
        required=True, metadata={"description": "Of which effective since the previous close."}
    )


class PeriodSchema(Schema):
    id = fields.Integer(required=True)
    through = fields.DateTime(required=True)
    closed_at = fields.DateTime(required=True)
    actor = fields.String(required=True, metadata={"description": "`key:<prefix>`, or operator."})
    summary = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CloseSummarySchema),
        required=True,
        metadata={"description": "Per asset code: the trial balance as of `through`."},
    )


class TrialBalanceQuerySchema(Schema):
    asset_code = asset_code_field(required=True)
    as_of = _moment("Balances counting entries effective at or before this time; default now.")


class TrialBalanceSchema(TrialBalanceLinesSchema):
    asset_code = fields.String(required=True)
    as_of = fields.DateTime(required=True)


class MovementsQuerySchema(Schema):
    asset_code = asset_code_field(required=True)
    from_ = _moment("From this time (inclusive).", required=True, data_key="from")
    to = _moment("To this time (exclusive).", required=True)
    interval = fields.String(
        load_default="day",
        validate=validate.OneOf(["day", "hour"]),
        metadata={"description": "Bucket size, in UTC."},
    )


class MovedSchema(Schema):
    amount = fields.Integer(
        required=True, metadata={"description": MONEY + " Debits too are positive."}
    )
    count = fields.Integer(required=True, metadata={"description": "Wallet entries."})


class TypeMovementsSchema(Schema):
    type = fields.String(required=True)
    credits = fields.Nested(MovedSchema, required=True)
    debits = fields.Nested(MovedSchema, required=True)


class BucketSchema(Schema):
    start = fields.DateTime(required=True, metadata={"description": "The bucket's UTC start."})
    types = fields.List(fields.Nested(TypeMovementsSchema), required=True)


class MovementsSchema(Schema):
    asset_code = fields.String(required=True)
    from_ = fields.DateTime(required=True, data_key="from")
    to = fields.DateTime(required=True)
    interval = fields.String(required=True, metadata={"enum": ["day", "hour"]})
    buckets = fields.List(fields.Nested(BucketSchema), required=True)
