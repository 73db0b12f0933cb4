"""Property tests of the request validators: the marshmallow schemas at the API's edge and the
ledger's own checks behind them.

Whatever the input, each layer either accepts a value unchanged or refuses it naming the
field, with a stable code (the ledger) or under that field's key (the schemas). Nothing
else may escape: in the API any other exception is a 500. The expected verdicts come from
the documented rules, written out here again, not from the validators' own patterns.
"""

from __future__ import annotations

import json
import math
import unicodedata
import uuid
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from api.submission import request_from_body
from api.transaction_schemas import BonusSchema, SpendSchema, TopupSchema, TransactionSchema
from ledger.errors import InvalidRequest
from ledger.transaction_request import (
    MAX_AMOUNT,
    MAX_HOLD_SECONDS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    TransactionRequest,
)
from tests.unit.test_identifiers import DEFAULT_IGNORABLE

# No example database: several engineers share this checkout. No deadline: the cores are
# shared too, and a slow example is not a failing one.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=40)

TYPES = (
    "topup",
    "bonus",
    "spend",
    "refund",
    "transfer",
    "adjustment",
    "hold",
    "capture",
    "void",
)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOLD_ID = uuid.UUID(int=7)

# --- the documented rules, restated ------------------------------------------------------

MAX_TEXT = 128
MAX_ASSET_CODE = 32
ASSET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def storable(text: str) -> bool:
    """PostgreSQL text holds no NUL, and UTF-8 cannot encode an unpaired surrogate."""
    return "\x00" not in text and not any(0xD800 <= ord(char) <= 0xDFFF for char in text)


# Invisible characters that would let one user id pass for another (restated in
# test_identifiers.py from Unicode's tables), and the categories of spaces, controls, format
# characters and surrogates.
INVISIBLE = frozenset(map(chr, DEFAULT_IGNORABLE))
NOT_IN_USER_ID_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs"})


def is_user_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_TEXT
        and not value.startswith("@")
        and value not in (".", "..")
        and "/" not in value
        and storable(value)
        and not any(char.isspace() for char in value)
        and not any(unicodedata.category(char) in NOT_IN_USER_ID_CATEGORIES for char in value)
        and not any(char in INVISIBLE for char in value)
        and unicodedata.normalize("NFC", value) == value
    )


# Bidirectional controls and zero-width characters make two reference ids look alike.
NOT_IN_REFERENCE_ID = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    "\u200b\u200c\u200d\u2060\ufeff"
)


def is_reference_id(value: object) -> bool:
    return is_text(value) and not any(char in NOT_IN_REFERENCE_ID for char in value)


def is_asset_code(value: object) -> bool:
    return (
        isinstance(value, str) and 1 <= len(value) <= MAX_ASSET_CODE and set(value) <= ASSET_CHARS
    )


def is_text(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_TEXT and storable(value)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def depth(value: object) -> int:
    """How many objects and arrays nest here: {} is 1, {"a": []} is 2, a scalar 0.
    A loop, so that it measures a thousand levels too."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(finite, value.values()))
    if isinstance(value, list):
        return all(map(finite, value))
    return True


def encoded_size(metadata: dict[str, Any]) -> int:
    """Bytes of the compact JSON text, non-ASCII escaped: what TALLY_MAX_METADATA_BYTES bounds."""
    return len(json.dumps(metadata, separators=(",", ":")).encode())


def metadata_verdict(metadata: dict[str, Any], limit: int = MAX_METADATA_BYTES) -> str | None:
    """The code the ledger refuses this JSON object with, or None if it accepts it."""
    if (
        not finite(metadata)
        or depth(metadata) > MAX_METADATA_DEPTH
        or not all(map(storable, strings_in(metadata)))
    ):
        return "invalid_metadata"
    return "metadata_too_large" if encoded_size(metadata) > limit else None


# --- strategies ----------------------------------------------------------------------------

# Every code point, surrogates included, and the characters most likely to slip through:
# controls, Unicode spaces, bidi marks, a combining accent, a BOM, astral characters.
TRICKY = [
    *("\x00", "\t", "\n", "\r", " ", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\xa0"),
    *("\u1680", "\u2028", "\u200b", "\u200e", "\u200f", "\u202e", "\u2066", "\u0301"),
    *("\ufeff", "\uffff", "\U0001f600", "\U0010ffff", "\ud800", "\udbff", "\udc00", "\udfff"),
    *("\u00ad", "\u034f", "\u3164", "\ufe0f", "\u180e", "\ufff9", "\U000e0041", "\u2060"),
    *("@", "_", "/", "."),
]
any_char = st.characters(exclude_categories=()) | st.sampled_from(TRICKY)
any_text = st.text(any_char, max_size=24)
# Visible, storable, non-space characters, astral ones included: a length counts code points.
id_char = st.characters(
    exclude_categories=("Cs", "Cf", "Zs", "Zl", "Zp", "Cc"), exclude_characters="@/\x85"
).filter(lambda char: not char.isspace() and char not in INVISIBLE)


def around(limit: int, alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text of `alphabet` one short of, at, and one beyond `limit` characters (or empty)."""
    return st.sampled_from([0, 1, limit - 1, limit, limit + 1]).flatmap(
        lambda n: st.text(alphabet, min_size=n, max_size=n)
    )


def very_long(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda char, n: char * n, alphabet, st.integers(MAX_TEXT + 1, 200_000))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=10**40)
    | st.floats()
    | st.text(any_char, max_size=12)
)
# JSON as a JSON parser can produce it: strings for keys, NaN and infinities included
# (Python's decoder reads them).
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(any_char, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(any_char, max_size=8), json_values, max_size=5)
not_strings = json_values.filter(lambda value: not isinstance(value, str))
not_ints = json_values.filter(lambda value: not is_int(value)) | st.decimals(allow_nan=False)


# --- requests and bodies -------------------------------------------------------------------

# What a valid request of each type carries, beyond `type` and `reference_id`.
VALID_FIELDS: dict[str, dict[str, Any]] = {
    "topup": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "bonus": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "spend": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "refund": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "transfer": {"user_id": "alice", "asset_code": "EUR", "amount": 100, "to_user_id": "bob"},
    "adjustment": {"user_id": "alice", "asset_code": "EUR", "amount": -100, "reason": "fix"},
    "hold": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "capture": {"amount": 40},
    "void": {},
    "payout": {"user_id": "alice", "asset_code": "EUR", "amount": 100},
    "exchange": {
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": 100,
        "to_asset_code": "USD",
        "to_amount": 110,
    },
    "journal": {
        "reason": "fix",
        "postings": [{"from": "@adjustments", "to": "alice", "asset_code": "EUR", "amount": 5}],
    },
}
# docs/design.md#transaction-types: the original a refund, capture or void names.
NAMES_AN_ORIGINAL = {"refund", "capture", "void"}


def ledger_request(kind: str, /, **changes: Any) -> TransactionRequest:
    """A valid request of type `kind`, with `changes` (None removes an optional field)."""
    values: dict[str, Any] = {"type": kind, "reference_id": "ref-1", **VALID_FIELDS[kind]}
    if kind in NAMES_AN_ORIGINAL:
        values["original_transaction_id"] = HOLD_ID
    return TransactionRequest(**{**values, **changes})


def refusal(request: TransactionRequest, **limits: Any) -> tuple[str, str | None]:
    """(code, field) of the InvalidRequest the ledger refuses `request` with."""
    with pytest.raises(InvalidRequest) as caught:
        request.validated(now=NOW, **limits)
    return caught.value.code, caught.value.field


def accepted(request: TransactionRequest, **limits: Any) -> TransactionRequest:
    checked = request.validated(now=NOW, **limits)
    assert checked is request
    return checked


def body(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A valid `POST /transactions` body of type `kind`, as JSON decodes it."""
    values: dict[str, Any] = {"type": kind, "reference_id": "ref-1", **VALID_FIELDS[kind]}
    if kind in NAMES_AN_ORIGINAL:
        values["original_transaction_id"] = str(HOLD_ID)
    return {**values, **changes}


SEED_SCHEMAS: dict[str, Schema] = {
    "topup": TopupSchema(),
    "bonus": BonusSchema(),
    "spend": SpendSchema(),
}
TRANSACTION_SCHEMA = TransactionSchema()


def seed_body(kind: str, /, **changes: Any) -> dict[str, Any]:
    values = body(kind, **changes)
    del values["type"]
    return values


def schema_errors(schema: Schema, data: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        schema.load(data)
    assert isinstance(caught.value.messages, dict)
    return caught.value.messages


# --- amounts -------------------------------------------------------------------------------

POSITIVE_AMOUNT_TYPES = ("topup", "bonus", "spend", "refund", "transfer", "hold", "capture")
bad_amounts = (
    st.integers(max_value=0)
    | st.integers(min_value=MAX_AMOUNT + 1)
    | st.sampled_from([True, False, 1.0, 1e3, math.nan, math.inf, -math.inf, 2**127, 10**39])
    | st.floats()
    | st.integers().map(str)
    | st.decimals(allow_nan=False).filter(lambda d: d.is_finite())
)


@PROPERTY
@given(type=st.sampled_from(POSITIVE_AMOUNT_TYPES), amount=st.integers(1, MAX_AMOUNT))
@example(type="topup", amount=1)
@example(type="topup", amount=MAX_AMOUNT)
def test_ledger_accepts_every_positive_amount_up_to_the_bound(type, amount):
    assert accepted(ledger_request(type, amount=amount)).amount == amount


@PROPERTY
@given(type=st.sampled_from(POSITIVE_AMOUNT_TYPES), amount=bad_amounts)
@example(type="topup", amount=MAX_AMOUNT + 1)
@example(type="capture", amount=0)
def test_ledger_refuses_any_other_amount_as_invalid_amount(type, amount):
    assert refusal(ledger_request(type, amount=amount)) == ("invalid_amount", "amount")


@PROPERTY
@given(amount=st.integers(-MAX_AMOUNT, MAX_AMOUNT).filter(bool))
@example(amount=-MAX_AMOUNT)
@example(amount=MAX_AMOUNT)
def test_ledger_accepts_a_signed_adjustment_within_the_bound(amount):
    assert accepted(ledger_request("adjustment", amount=amount)).amount == amount


@PROPERTY
@given(
    amount=st.sampled_from([0, MAX_AMOUNT + 1, -MAX_AMOUNT - 1, True, -1.0, "-5"])
    | st.integers(min_value=MAX_AMOUNT + 1).flatmap(lambda n: st.sampled_from([n, -n]))
    | bad_amounts.filter(lambda a: not is_int(a))
)
def test_ledger_refuses_a_zero_or_out_of_bound_adjustment(amount):
    assert refusal(ledger_request("adjustment", amount=amount)) == ("invalid_amount", "amount")


def amount_schemas() -> st.SearchStrategy[tuple[Schema, dict[str, Any]]]:
    """Every schema an amount reaches, with a valid body for it (amount to be replaced)."""
    seeds = [(schema, seed_body(type)) for type, schema in SEED_SCHEMAS.items()]
    general = [(TRANSACTION_SCHEMA, body(type)) for type in POSITIVE_AMOUNT_TYPES]
    return st.sampled_from(seeds + general)


@PROPERTY
@given(case=amount_schemas(), amount=st.integers(1, MAX_AMOUNT))
def test_schemas_accept_every_positive_amount_up_to_the_bound(case, amount):
    schema, valid = case
    assert schema.load({**valid, "amount": amount})["amount"] == amount


# As JSON decodes them: no Decimal, but every other kind of JSON value.
bad_json_amounts = bad_amounts.filter(lambda a: not isinstance(a, Decimal)) | (
    json_values.filter(lambda value: not is_int(value))
)


@PROPERTY
@given(case=amount_schemas(), amount=bad_json_amounts)
def test_schemas_refuse_any_other_amount_under_the_amount_key(case, amount):
    schema, valid = case
    assert set(schema_errors(schema, {**valid, "amount": amount})) == {"amount"}


@PROPERTY
@given(amount=st.integers(-MAX_AMOUNT - 2, MAX_AMOUNT + 2) | st.integers())
@example(amount=0)
@example(amount=-MAX_AMOUNT - 1)
def test_the_general_schema_takes_a_signed_adjustment_iff_non_zero_within_the_bound(amount):
    data = body("adjustment", amount=amount)
    if amount != 0 and abs(amount) <= MAX_AMOUNT:
        assert TRANSACTION_SCHEMA.load(data)["amount"] == amount
    else:
        assert set(schema_errors(TRANSACTION_SCHEMA, data)) == {"amount"}


# --- identifiers ---------------------------------------------------------------------------

# field: (a type whose requests carry it, the rule, the ledger's code for a refusal)
IDENTIFIERS: dict[str, tuple[str, Any, str]] = {
    "user_id": ("topup", is_user_id, "invalid_user_id"),
    "to_user_id": ("transfer", is_user_id, "invalid_user_id"),
    "asset_code": ("topup", is_asset_code, "invalid_asset_code"),
    "reference_id": ("topup", is_reference_id, "invalid_field"),
    "payment_method": ("topup", is_text, "invalid_field"),
    "bonus_type": ("bonus", is_text, "invalid_field"),
    "item_id": ("spend", is_text, "invalid_field"),
    "reason": ("adjustment", is_text, "invalid_field"),
}


def identifier_values(name: str) -> st.SearchStrategy[Any]:
    if name == "asset_code":
        valid_char = st.sampled_from(sorted(ASSET_CHARS))
        limit = MAX_ASSET_CODE
    else:
        valid_char = id_char
        limit = MAX_TEXT
    return (
        any_text
        | st.text(valid_char, min_size=1, max_size=12)
        | around(limit, valid_char)
        | around(limit, any_char)
        | very_long(any_char)
        # A valid value with one tricky character somewhere in it.
        | st.builds(
            lambda head, char, tail: head + char + tail,
            st.text(valid_char, max_size=4),
            st.sampled_from(TRICKY),
            st.text(valid_char, max_size=4),
        )
        | not_strings
    )


identifier_cases = st.sampled_from(sorted(IDENTIFIERS)).flatmap(
    lambda name: st.tuples(st.just(name), identifier_values(name))
)


def ledger_identifier_verdict(name: str, value: Any) -> tuple[str, str] | None:
    """(code, field) of the ledger's refusal, or None for an accepted value."""
    _, rule, code = IDENTIFIERS[name]
    if value is None:
        if name in {"payment_method", "bonus_type", "item_id"}:
            return None  # optional: absent
        if name in {"reference_id", "reason"}:
            return "missing_field", name
    if not rule(value):
        return code, name
    if name == "to_user_id" and value == VALID_FIELDS["transfer"]["user_id"]:
        return "same_wallet", name
    return None


@PROPERTY
@given(case=identifier_cases)
@example(case=("user_id", "@topup"))
@example(case=("user_id", "a@" + "x" * 126))
@example(case=("user_id", "x" * 129))
@example(case=("user_id", "alice\n"))
@example(case=("user_id", "\u200fRTL\u0301"))
@example(case=("asset_code", "A" * 32))
@example(case=("asset_code", "A" * 33))
@example(case=("asset_code", "EUR\n"))
@example(case=("reference_id", "\U0001f600" * 128))
@example(case=("reference_id", "\U0001f600" * 129))
@example(case=("item_id", "sku\x00"))
@example(case=("reason", "\udc80"))
def test_ledger_keeps_an_identifier_unchanged_or_refuses_it_naming_the_field(case):
    name, value = case
    request = ledger_request(IDENTIFIERS[name][0], **{name: value})
    verdict = ledger_identifier_verdict(name, value)
    if verdict is None:
        kept = getattr(accepted(request), name)
        assert kept is value
        if kept is not None:
            assert storable(kept)
            assert kept.encode("utf-8").decode("utf-8") == kept
    else:
        assert refusal(request) == verdict


def schemas_with(name: str) -> list[tuple[Schema, dict[str, Any]]]:
    """Every submission schema that has field `name`, each with a valid body."""
    type = IDENTIFIERS[name][0]
    cases = [(TRANSACTION_SCHEMA, body(type))]
    for seed, schema in SEED_SCHEMAS.items():
        if name in schema.fields:
            cases.append((schema, seed_body(seed)))
    return cases


@PROPERTY
@given(case=identifier_cases, pick=st.integers(0, 3))
@example(case=("user_id", "@revenue"), pick=0)
@example(case=("asset_code", "eur"), pick=1)
@example(case=("reference_id", "r" * 129), pick=0)
@example(case=("reference_id", "r\ud800"), pick=1)
def test_schemas_keep_an_identifier_unchanged_or_refuse_it_under_its_key(case, pick):
    name, value = case
    schemas = schemas_with(name)
    schema, valid = schemas[pick % len(schemas)]
    data = {**valid, name: value}
    rule = IDENTIFIERS[name][1]
    if rule(value):
        loaded = schema.load(data)[name]
        assert loaded == value
        assert storable(loaded)
    else:
        # null included: no field of a submission is nullable.
        assert set(schema_errors(schema, data)) == {name}


uuid_texts = (
    st.uuids().map(str)
    | st.uuids().map(lambda u: u.hex)
    | st.uuids().map(lambda u: "{" + str(u).upper() + "}")
    | any_text
    | around(36, st.sampled_from("0123456789abcdef-"))
)


@PROPERTY
@given(type=st.sampled_from(sorted(NAMES_AN_ORIGINAL)), value=uuid_texts | not_strings)
def test_the_general_schema_reads_an_original_transaction_id_as_a_uuid_or_refuses_it(type, value):
    data = body(type, original_transaction_id=value)
    try:
        expected = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        expected = None
    if expected is None:
        assert set(schema_errors(TRANSACTION_SCHEMA, data)) == {"original_transaction_id"}
    else:
        assert TRANSACTION_SCHEMA.load(data)["original_transaction_id"] == expected


@PROPERTY
@given(type=st.sampled_from(sorted(NAMES_AN_ORIGINAL)), value=st.uuids() | uuid_texts | not_ints)
def test_ledger_takes_only_a_uuid_as_the_original_of_a_refund_capture_or_void(type, value):
    request = ledger_request(type, original_transaction_id=value)
    if isinstance(value, uuid.UUID):
        assert accepted(request).original_transaction_id == value
    else:
        assert refusal(request) == ("missing_field", "original_transaction_id")


# --- metadata ------------------------------------------------------------------------------


@PROPERTY
@given(metadata=json_objects, limit=st.integers(1, 400))
@example(metadata={"note": "café ☕ 😀", "escaped": "\\u0000 is just text"}, limit=400)
@example(metadata={"k\x00": 1}, limit=400)
@example(metadata={"k": [{"x": "\udc80"}]}, limit=400)
@example(metadata={"k": math.nan}, limit=400)
@example(metadata={"k": -math.inf}, limit=400)
@example(metadata={"k": 2**64}, limit=400)
def test_ledger_accepts_metadata_iff_storable_json_within_the_size_limit(metadata, limit):
    request = ledger_request("topup", metadata=metadata)
    verdict = metadata_verdict(metadata, limit)
    if verdict is None:
        assert accepted(request, max_metadata_bytes=limit).metadata == metadata
    else:
        assert refusal(request, max_metadata_bytes=limit) == (verdict, "metadata")


@PROPERTY
@given(
    metadata=json_objects.filter(lambda m: metadata_verdict(m, 10**9) is None),
    overshoot=st.integers(-3, 3),
)
def test_ledger_bounds_metadata_by_its_encoded_bytes_at_the_default_limit(metadata, overshoot):
    # Pad a string (ASCII, one byte a character) so the whole encodes to limit + overshoot.
    padded = {**metadata, "\U0001f4e6pad": ""}
    padding = MAX_METADATA_BYTES + overshoot - encoded_size(padded)
    if padding < 0:
        return  # this metadata alone is already bigger: the other test covers it
    padded["\U0001f4e6pad"] = "x" * padding
    assert encoded_size(padded) == MAX_METADATA_BYTES + overshoot
    request = ledger_request("spend", metadata=padded)
    if overshoot <= 0:
        assert accepted(request).metadata == padded
    else:
        assert refusal(request) == ("metadata_too_large", "metadata")


LEAVES = st.none() | st.integers() | st.text(id_char, max_size=3)


@st.composite
def nested(
    draw: st.DrawFn, levels: st.SearchStrategy[int], leaves: st.SearchStrategy[Any] = LEAVES
) -> dict[str, Any]:
    """A metadata object whose arrays and objects nest exactly `levels` deep."""
    count = draw(levels)
    # Objects (True) and arrays (False) in a drawn pattern, repeated as deep as it goes.
    pattern = draw(st.lists(st.booleans(), min_size=1, max_size=8))
    leaf = draw(leaves)
    for level in range(count - 1):
        leaf = {"k": leaf} if pattern[level % len(pattern)] else [leaf]
    return {"m": leaf}


@PROPERTY
@given(metadata=nested(st.integers(1, 3 * MAX_METADATA_DEPTH)))
@example(metadata={"m": 1})
def test_ledger_accepts_metadata_iff_nested_within_the_depth_limit(metadata):
    request = ledger_request("topup", metadata=metadata)
    if depth(metadata) <= MAX_METADATA_DEPTH:
        assert accepted(request).metadata == metadata
    else:
        assert refusal(request) == ("invalid_metadata", "metadata")


@FEW
@given(metadata=nested(st.sampled_from([MAX_METADATA_DEPTH + 1, 400, 1_000, 10_000, 100_000])))
def test_ledger_refuses_absurd_nesting_as_invalid_metadata_not_a_recursion_error(metadata):
    # 400 levels fit in 4096 bytes and pass orjson's parser: the API reaches this check.
    assert refusal(ledger_request("topup", metadata=metadata)) == ("invalid_metadata", "metadata")


def test_ledger_refuses_metadata_that_contains_itself():
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    assert refusal(ledger_request("topup", metadata=cyclic)) == ("invalid_metadata", "metadata")


not_string_keys = st.integers() | st.none() | st.booleans() | st.floats() | st.tuples(st.integers())
not_json_values = st.sampled_from(
    [(1, 2), ("\x00",), frozenset({1}), {1, 2}, b"bytes", Decimal("1.5"), object(), NOW]
)


def bury(value: Any, path: list[bool]) -> dict[str, Any]:
    """`value` at the end of `path` (True: in an object, False: in an array) in an object."""
    for in_object in path:
        value = {"k": value} if in_object else [value]
    return {"m": value}


@PROPERTY
@given(
    key=not_string_keys,
    value=json_values,
    path=st.lists(st.booleans(), max_size=4),
    mixed=st.booleans(),
)
@example(key=1, value="b", path=[], mixed=True)
def test_ledger_refuses_metadata_with_a_key_that_is_not_a_string(key, value, path, mixed):
    # {1: "a", "1": "b"} would be stored as two "1" keys, and cannot be fingerprinted.
    inner = {key: value, "1": "b"} if mixed else {key: value}
    request = ledger_request("topup", metadata=bury(inner, path))
    assert refusal(request) == ("invalid_metadata", "metadata")


@PROPERTY
@given(value=not_json_values, path=st.lists(st.booleans(), max_size=4))
def test_ledger_refuses_metadata_holding_a_value_json_does_not_have(value, path):
    request = ledger_request("topup", metadata=bury(value, path))
    assert refusal(request) == ("invalid_metadata", "metadata")


@PROPERTY
@given(metadata=json_values.filter(lambda value: not isinstance(value, dict)))
def test_ledger_refuses_metadata_that_is_not_an_object(metadata):
    request = ledger_request("topup", metadata=metadata)
    assert refusal(request) == ("invalid_metadata", "metadata")


finite_objects = json_objects.filter(finite)  # NaN equals nothing: no round trip to compare


@PROPERTY
@given(
    metadata=finite_objects, schema=st.sampled_from([*SEED_SCHEMAS.values(), TRANSACTION_SCHEMA])
)
def test_schemas_pass_any_json_object_through_as_metadata_for_the_ledger_to_judge(metadata, schema):
    data = body("topup", metadata=metadata)
    if schema is not TRANSACTION_SCHEMA:
        del data["type"]
    assert schema.load(data)["metadata"] == metadata


@PROPERTY
@given(metadata=json_values.filter(lambda value: not isinstance(value, dict)))
def test_schemas_refuse_metadata_that_is_not_an_object(metadata):
    assert set(schema_errors(TRANSACTION_SCHEMA, body("topup", metadata=metadata))) == {"metadata"}


@PROPERTY
@given(key=not_string_keys, value=json_values)
def test_schemas_refuse_metadata_with_a_key_that_is_not_a_string(key, value):
    data = seed_body("topup", metadata={key: value})
    assert set(schema_errors(TopupSchema(), data)) == {"metadata"}


# --- unknown, missing and mistyped fields --------------------------------------------------

ALL_FIELDS = frozenset(TRANSACTION_SCHEMA.fields)


@PROPERTY
@given(
    schema=st.sampled_from([*SEED_SCHEMAS.values(), TRANSACTION_SCHEMA]),
    key=st.text(any_char, min_size=1, max_size=16) | st.sampled_from(sorted(ALL_FIELDS)),
    value=json_values,
)
@example(schema=TopupSchema(), key="item_id", value="sku-1")
@example(schema=SpendSchema(), key="type", value="spend")
@example(schema=TRANSACTION_SCHEMA, key="tenant_id", value=None)
def test_schemas_refuse_any_field_they_do_not_declare(schema, key, value):
    if key in schema.fields:
        return  # declared: not this property's business
    data = seed_body("topup") if schema is not TRANSACTION_SCHEMA else body("topup")
    assert schema_errors(schema, {**data, key: value}) == {key: ["Unknown field."]}


# docs/design.md#transaction-types: the fields each type names, beyond type, reference_id
# and the descriptive ones.
TYPE_FIELDS: dict[str, frozenset[str]] = {
    "topup": frozenset({"user_id", "asset_code", "amount"}),
    "bonus": frozenset({"user_id", "asset_code", "amount"}),
    "spend": frozenset({"user_id", "asset_code", "amount"}),
    "refund": frozenset({"user_id", "asset_code", "amount", "original_transaction_id"}),
    "transfer": frozenset({"user_id", "asset_code", "amount", "to_user_id"}),
    "adjustment": frozenset({"user_id", "asset_code", "amount"}),
    "hold": frozenset(
        {"user_id", "asset_code", "amount", "to_user_id", "expires_in", "expires_at"}
    ),
    "capture": frozenset({"amount", "original_transaction_id"}),
    "void": frozenset({"original_transaction_id"}),
}
# A valid value of each field a type might wrongly carry.
FOREIGN_VALUES: dict[str, Any] = {
    "user_id": "carol",
    "asset_code": "EUR",
    "amount": 5,
    "to_user_id": "dave",
    "original_transaction_id": uuid.UUID(int=9),
    "expires_in": 60,
    "expires_at": NOW + timedelta(days=1),
}


@PROPERTY
@given(type=st.sampled_from(TYPES), name=st.sampled_from(sorted(FOREIGN_VALUES)))
def test_ledger_refuses_a_field_of_another_type_as_unexpected(type, name):
    request = ledger_request(type, **{name: FOREIGN_VALUES[name]})
    if name in TYPE_FIELDS[type]:
        assert getattr(accepted(request), name) == FOREIGN_VALUES[name]
    else:
        assert refusal(request) == ("unexpected_field", name)


# What each type cannot go without, and the ledger's code when it is absent.
REQUIRED: dict[str, str] = {
    "reference_id": "missing_field",
    "user_id": "invalid_user_id",
    "asset_code": "invalid_asset_code",
    "amount": "invalid_amount",
    "to_user_id": "invalid_user_id",
    "original_transaction_id": "missing_field",
    "reason": "missing_field",
}
NEEDS: dict[str, frozenset[str]] = {
    type: frozenset({"reference_id"} | (TYPE_FIELDS[type] & {"user_id", "asset_code", "amount"}))
    for type in TYPES
}
NEEDS = {
    **NEEDS,
    "refund": NEEDS["refund"] | {"original_transaction_id"},
    "transfer": NEEDS["transfer"] | {"to_user_id"},
    "adjustment": NEEDS["adjustment"] | {"reason"},
    "capture": frozenset({"reference_id", "original_transaction_id"}),  # amount: the whole hold
    "void": frozenset({"reference_id", "original_transaction_id"}),
}
ledger_missing = st.sampled_from([(type, name) for type in TYPES for name in sorted(NEEDS[type])])


@PROPERTY
@given(case=ledger_missing)
def test_ledger_names_the_field_a_type_cannot_go_without(case):
    type, name = case
    assert refusal(ledger_request(type, **{name: None})) == (REQUIRED[name], name)


@pytest.mark.parametrize(
    ("type", "absent"),
    [
        ("capture", {"amount": None}),
        ("hold", {"to_user_id": None, "expires_in": None, "expires_at": None}),
        ("topup", {"payment_method": None, "bonus_type": None, "item_id": None}),
    ],
)
def test_ledger_accepts_a_request_without_the_fields_its_type_can_do_without(type, absent):
    request = accepted(ledger_request(type, **absent))
    assert all(getattr(request, name) is None for name in absent)


# What the general schema requires of a body of each type (the ledger checks the rest).
SCHEMA_REQUIRED = {
    type: frozenset({"type", "reference_id"})
    | ({"user_id", "asset_code", "amount"} if type not in {"capture", "void"} else set())
    for type in TYPES
}


@PROPERTY
@given(type=st.sampled_from(TYPES), data=st.data())
def test_the_general_schema_names_every_required_field_missing_from_a_body(type, data):
    full = body(type)
    dropped = data.draw(
        st.sets(st.sampled_from(sorted(full)), min_size=1).filter(
            lambda s: s & SCHEMA_REQUIRED[type]
        )
    )
    kept = {name: value for name, value in full.items() if name not in dropped}
    # Without a type the body is held to what most types need: a wallet and a positive amount.
    required = SCHEMA_REQUIRED["topup"] if "type" in dropped else SCHEMA_REQUIRED[type]
    # (Its sign is judged only once the wallet and amount are all there.)
    missing = required - set(kept)
    wallet = {"user_id", "asset_code", "amount"}
    negative = "type" in dropped and kept.get("amount", 0) < 0 and not missing & wallet
    expected = missing | ({"amount"} if negative else set())
    assert set(schema_errors(TRANSACTION_SCHEMA, kept)) == expected


@PROPERTY
@given(
    type=st.sampled_from(sorted(SEED_SCHEMAS)),
    dropped=st.sets(
        st.sampled_from(["user_id", "asset_code", "amount", "reference_id"]), min_size=1
    ),
)
def test_the_seed_schemas_name_every_required_field_missing_from_a_body(type, dropped):
    kept = {name: value for name, value in seed_body(type).items() if name not in dropped}
    assert set(schema_errors(SEED_SCHEMAS[type], kept)) == dropped


# The JSON type each field of `POST /transactions` takes.
JSON_TYPES: dict[str, Any] = {
    **{name: lambda v: isinstance(v, str) for name in ALL_FIELDS},
    "amount": is_int,
    "expires_in": is_int,
    "metadata": lambda v: isinstance(v, dict),
    "to_amount": is_int,
    # Loaded as sent: the ledger judges their shape (invalid_splits, invalid_postings).
    "splits": lambda v: v is not None,
    "postings": lambda v: v is not None,
}


@PROPERTY
@given(name=st.sampled_from(sorted(ALL_FIELDS)), value=json_values)
def test_the_general_schema_refuses_a_json_value_of_the_wrong_type_in_any_field(name, value):
    if JSON_TYPES[name](value):
        return  # the right type: other properties judge the value
    data = body("hold" if name.startswith("expires") else "topup", **{name: value})
    assert set(schema_errors(TRANSACTION_SCHEMA, data)) == {name}


# The ledger's code for a value of the wrong type, and a type whose requests carry the field.
LEDGER_TYPE_ERRORS: dict[str, tuple[str, str]] = {
    "type": ("topup", "invalid_type"),
    "reference_id": ("topup", "invalid_field"),
    "user_id": ("topup", "invalid_user_id"),
    "asset_code": ("topup", "invalid_asset_code"),
    "amount": ("topup", "invalid_amount"),
    "to_user_id": ("transfer", "invalid_user_id"),
    "original_transaction_id": ("refund", "missing_field"),
    "payment_method": ("topup", "invalid_field"),
    "bonus_type": ("topup", "invalid_field"),
    "item_id": ("topup", "invalid_field"),
    "reason": ("adjustment", "invalid_field"),
    "metadata": ("topup", "invalid_metadata"),
    "expires_in": ("hold", "invalid_expiry"),
    "expires_at": ("hold", "invalid_expiry"),
    "splits": ("spend", "invalid_splits"),
    "to_account": ("hold", "invalid_field"),
    "payout_method": ("payout", "invalid_field"),
    "destination": ("payout", "invalid_field"),
    "to_asset_code": ("exchange", "invalid_asset_code"),
    "to_amount": ("exchange", "invalid_amount"),
    "postings": ("journal", "invalid_postings"),
    "effective_at": ("topup", "invalid_effective_at"),
}


def right_python_type(name: str, value: Any) -> bool:
    if name in ("amount", "expires_in", "to_amount"):
        return is_int(value)
    if name in ("splits", "postings"):
        return isinstance(value, list)  # a list of the wrong items is judged elsewhere
    if name == "original_transaction_id":
        return isinstance(value, uuid.UUID)
    if name == "expires_at":
        return isinstance(value, datetime)
    if name == "effective_at":  # with a time zone: a naive one is refused for lacking it
        return isinstance(value, datetime) and value.tzinfo is not None
    if name == "metadata":
        return isinstance(value, dict)
    return isinstance(value, str)


@PROPERTY
@given(
    name=st.sampled_from(sorted(LEDGER_TYPE_ERRORS)),
    value=json_values | not_json_values | st.uuids() | st.datetimes(),
)
def test_ledger_refuses_a_value_of_the_wrong_type_in_any_field(name, value):
    if right_python_type(name, value) or value is None:
        return  # judged by the value properties; None is an absent field
    type, code = LEDGER_TYPE_ERRORS[name]
    request = ledger_request(type, **{name: value})
    assert refusal(request) == (code, name)


def test_every_request_field_has_a_wrong_type_case():
    assert {f.name for f in dataclass_fields(TransactionRequest)} == set(LEDGER_TYPE_ERRORS)
    assert set(JSON_TYPES) == ALL_FIELDS == set(LEDGER_TYPE_ERRORS)


# --- hold expiry ---------------------------------------------------------------------------


@PROPERTY
@given(expires_in=st.integers() | st.integers(0, MAX_HOLD_SECONDS + 1) | st.booleans())
@example(expires_in=1)
@example(expires_in=MAX_HOLD_SECONDS)
@example(expires_in=MAX_HOLD_SECONDS + 1)
def test_ledger_takes_a_hold_lifetime_of_one_second_to_thirty_days(expires_in):
    request = ledger_request("hold", expires_in=expires_in)
    if is_int(expires_in) and 1 <= expires_in <= MAX_HOLD_SECONDS:
        assert accepted(request).expires_in_seconds() == expires_in
    else:
        assert refusal(request) == ("invalid_expiry", "expires_in")


offsets = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
aware_datetimes = st.datetimes(timezones=offsets) | st.datetimes(
    min_value=datetime(2029, 12, 30), max_value=datetime(2030, 2, 2), timezones=offsets
)


@PROPERTY
@given(expires_at=aware_datetimes | st.datetimes())
@example(expires_at=NOW)
@example(expires_at=NOW + timedelta(seconds=MAX_HOLD_SECONDS))
@example(expires_at=NOW + timedelta(seconds=MAX_HOLD_SECONDS, microseconds=1))
def test_ledger_takes_a_hold_expiry_with_a_zone_in_the_next_thirty_days(expires_at):
    request = ledger_request("hold", expires_at=expires_at)
    if expires_at.tzinfo is not None and 0 < (expires_at - NOW).total_seconds() <= MAX_HOLD_SECONDS:
        assert accepted(request).expires_at == expires_at
    else:
        assert refusal(request) == ("invalid_expiry", "expires_at")


@PROPERTY
@given(expires_at=aware_datetimes)
def test_the_general_schema_reads_an_aware_iso_timestamp_unchanged(expires_at):
    data = body("hold", expires_at=expires_at.isoformat())
    assert TRANSACTION_SCHEMA.load(data)["expires_at"] == expires_at


@PROPERTY
@given(expires_at=st.datetimes().map(datetime.isoformat) | any_text)
def test_the_general_schema_refuses_a_timestamp_without_a_zone_or_unreadable(expires_at):
    data = body("hold", expires_at=expires_at)
    try:
        loaded = TRANSACTION_SCHEMA.load(data)["expires_at"]
    except ValidationError as invalid:
        assert set(invalid.messages) == {"expires_at"}
    else:
        # Only text that reads as an ISO 8601 timestamp with an offset gets through.
        assert loaded.tzinfo is not None
        assert loaded == datetime.fromisoformat(expires_at.replace("Z", "+00:00"))


# --- the whole intake path -----------------------------------------------------------------


def field_values(name: str) -> st.SearchStrategy[Any]:
    """Valid and invalid values of a field, as JSON decodes them."""
    good = {
        "type": st.sampled_from(TYPES),
        "user_id": st.just("carol"),
        "to_user_id": st.just("dave"),
        "asset_code": st.just("GOLD"),
        "amount": st.integers(-MAX_AMOUNT, MAX_AMOUNT),
        "original_transaction_id": st.uuids().map(str),
        "expires_in": st.integers(0, MAX_HOLD_SECONDS + 1),
        "expires_at": st.just((NOW + timedelta(days=1)).isoformat()),
        "metadata": finite_objects,
    }.get(name, st.text(id_char, min_size=1, max_size=8))
    return good | json_values


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body of some type with a few fields changed (validly or not) or dropped."""
    sent = body(draw(st.sampled_from(TYPES)))
    for name in draw(st.sets(st.sampled_from(sorted(ALL_FIELDS)), max_size=3)):
        sent[name] = draw(field_values(name))
    for name in draw(st.sets(st.sampled_from(sorted(sent)), max_size=2)):
        del sent[name]
    return sent


@PROPERTY
@given(sent=bodies())
def test_a_body_is_refused_by_schema_or_ledger_naming_a_field_or_accepted_unchanged(sent):
    """What a submission route does: the schema, then the ledger's own checks."""
    try:
        loaded = TRANSACTION_SCHEMA.load(sent)
    except ValidationError as invalid:
        event("refused by the schema")
        assert set(invalid.messages) <= ALL_FIELDS
        return
    request = request_from_body(loaded["type"], loaded)
    try:
        request.validated(now=NOW)
    except InvalidRequest as refused:
        event(f"refused by the ledger: {refused.code}")
        assert refused.field in ALL_FIELDS
        return
    event("accepted")
    for name, value in sent.items():
        if name == "original_transaction_id":
            assert request.original_transaction_id == uuid.UUID(value)
        elif name == "expires_at":
            assert request.expires_at == datetime.fromisoformat(value)
        else:
            assert getattr(request, name) == value
    # Same body, same fingerprint: a replay is recognised.
    again = request_from_body(loaded["type"], TRANSACTION_SCHEMA.load(sent))
    assert again.fingerprint() == request.fingerprint()
