"""The field types the API's schemas share: money in minor units, text PostgreSQL can
store, cursors, user and reference ids and asset codes, each documented with the rule it
enforces."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError, fields, validate

from ledger.identifiers import (
    MAX_REFERENCE_ID,
    MAX_USER_ID,
    REFERENCE_ID_RULE,
    USER_ID_RULE,
    reference_id_fault,
    reference_id_pattern,
    user_id_fault,
    user_id_pattern,
)
from ledger.money import MAX_AMOUNT
from ledger.pagination import CURSOR_ALPHABET
from ledger.transaction_request import (
    ASSET_CODE,
    UNSTORABLE,
)

NOT_MINOR_UNITS = (
    "Not a valid integer of minor units: send a JSON integer, or with the header"
    ' Tally-Amounts: string, a decimal string of one such as "12345".'
)

# Portable JSON Schema (ECMA-262 and Python `re` read it alike) for what `storable` refuses
# in text: NUL. An unpaired surrogate is no Unicode text, so no document value can hold one.
NUL_FREE = r"^[^\u0000]*$"
# Cursors are unpadded URL-safe base64 (ledger/pagination.py).
CURSOR = f"^[{CURSOR_ALPHABET}]*$"


class MinorUnits(fields.Integer):
    """An amount in the asset's smallest unit: a JSON integer (or, with `Tally-Amounts:
    string`, a decimal string of one), never a float or bool; 1..MAX_AMOUNT (signed: a
    non-zero integer within ±MAX_AMOUNT)."""

    def __init__(self, *, signed: bool = False, **kwargs: Any) -> None:
        super().__init__(strict=True, error_messages={"invalid": NOT_MINOR_UNITS}, **kwargs)
        self.signed = signed
        # The bounds `_validated` enforces, in the document: non-zero, |amount| <= MAX_AMOUNT.
        bounds: dict[str, Any] = {"minimum": -MAX_AMOUNT if signed else 1, "maximum": MAX_AMOUNT}
        if signed:
            bounds["not"] = {"enum": [0]}
        self.metadata = {**bounds, **self.metadata}
        if "description" not in self.metadata:
            self.metadata = {
                **self.metadata,
                "description": "Integer amount in the asset's smallest unit (e.g. cents).",
            }

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        number = super()._validated(value)
        if number == 0 or abs(number) > MAX_AMOUNT or (number < 0 and not self.signed):
            low = -MAX_AMOUNT if self.signed else 1
            raise ValidationError(f"Must be a non-zero integer between {low} and {MAX_AMOUNT}.")
        return number


def storable(value: str) -> None:
    """Refuse text PostgreSQL cannot store (NUL) or encode (unpaired surrogates)."""
    if UNSTORABLE.search(value):
        raise ValidationError("Must not contain NUL characters or unpaired surrogates.")


def storable_text(*, max_length: int, min_length: int = 1, **kwargs: Any) -> fields.String:
    """Text of `min_length`..`max_length` characters the database can store, so documented.
    Checked before a lookup too, not only before an insert: the database refuses NUL."""
    metadata = {"pattern": NUL_FREE, **kwargs.pop("metadata", {})}
    return fields.String(
        validate=[validate.Length(min=min_length, max=max_length), storable],
        metadata=metadata,
        **kwargs,
    )


def cursor_field(max_length: int) -> fields.String:
    """A page cursor: only a `next_cursor` this API returned continues a listing."""
    return fields.String(
        validate=validate.Length(max=max_length),
        metadata={
            "pattern": CURSOR,
            "description": "A `next_cursor` from the previous page, as it was returned;"
            " any other value is refused `invalid_cursor`.",
        },
    )


class FullMatch(validate.Regexp):
    """Regexp that must match the whole value (`$` alone would let a trailing newline in)."""

    def __init__(self, regex: re.Pattern[str], error: str) -> None:
        # Anchored, so the OpenAPI document shows the same whole-value pattern.
        self.whole: re.Pattern[str] = re.compile(f"^(?:{regex.pattern})$")
        super().__init__(self.whole, error=error)

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.whole.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Identifier(validate.Validator):
    """One of the ledger's identifier rules (ledger/identifiers.py): its refusal says which
    part of the rule the value breaks."""

    def __init__(self, fault: Callable[[object], str | None]) -> None:
        self.fault = fault

    def __call__(self, value: Any) -> Any:
        fault = self.fault(value)
        if fault is not None:
            raise ValidationError(f"{fault[0].upper()}{fault[1:]}.")
        return value


def user_id_property(description: str = "") -> dict[str, Any]:
    """The user-id rule as JSON Schema: its code points as a pattern (Unicode, `u` flag
    semantics), its length, and what a pattern cannot say in the description."""
    rule = (
        f"A wallet owner's id: {USER_ID_RULE} The pattern lists the code points allowed (read"
        " it with Unicode semantics, the `u` flag)."
    )
    return {
        "pattern": user_id_pattern(),
        "minLength": 1,
        "maxLength": MAX_USER_ID,
        "description": f"{description} {rule}" if description else rule,
    }


def user_id_field(*, metadata: dict[str, Any] | None = None, **kwargs: Any) -> fields.String:
    return fields.String(
        validate=Identifier(user_id_fault),
        metadata=user_id_property((metadata or {}).get("description", "")),
        **kwargs,
    )


def reference_id_field(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=Identifier(reference_id_fault),
        metadata={
            "pattern": reference_id_pattern(),
            "minLength": 1,
            "maxLength": MAX_REFERENCE_ID,
            "description": f"The client's idempotency key, unique per tenant: {REFERENCE_ID_RULE}",
        },
        **kwargs,
    )


def asset_code_field(**kwargs: Any) -> fields.String:
    return fields.String(
        # marshmallow formats the message with str.format: the quantifier's braces are doubled.
        validate=FullMatch(ASSET_CODE, error="Must match [A-Z0-9_]{{1,32}}."),
        **kwargs,
    )
