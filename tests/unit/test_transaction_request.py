"""The ledger checks every request itself, whatever the edge in front of it let through."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger.errors import InvalidRequest
from ledger.transaction_request import MAX_AMOUNT, MAX_METADATA_BYTES, TransactionRequest


def request(type: str = "topup", **fields: Any) -> TransactionRequest:
    fields.setdefault("reference_id", "ref-1")
    fields.setdefault("user_id", "alice")
    fields.setdefault("asset_code", "EUR")
    fields.setdefault("amount", 100)
    return TransactionRequest(type=type, **fields)


def rejection(req: TransactionRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        req.validated()
    return caught.value


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "topup", "payment_method": "card"},
        {"type": "bonus", "bonus_type": "REFERRAL"},
        {"type": "spend", "item_id": "sku-1"},
        {"type": "refund", "original_transaction_id": uuid.uuid4()},
        {"type": "transfer", "to_user_id": "bob"},
        {"type": "adjustment", "amount": -5, "reason": "chargeback"},
        {"type": "adjustment", "amount": 5, "reason": "goodwill"},
    ],
)
def test_accepts_a_well_formed_request_of_every_type(fields):
    req = request(**fields)
    assert req.validated() is req


@pytest.mark.parametrize("amount", [1, MAX_AMOUNT])
def test_accepts_amounts_at_both_bounds(amount):
    assert request(amount=amount).validated().amount == amount


@pytest.mark.parametrize(
    "amount", [1.0, 10.5, float("nan"), True, False, "100", None, 0, -1, MAX_AMOUNT + 1, 2**128]
)
def test_rejects_an_amount_that_is_not_a_positive_int_within_bounds(amount):
    error = rejection(request(amount=amount))
    assert (error.code, error.field) == ("invalid_amount", "amount")


@pytest.mark.parametrize("amount", [-1, -MAX_AMOUNT, 1, MAX_AMOUNT])
def test_accepts_a_signed_adjustment_within_bounds(amount):
    assert request("adjustment", amount=amount, reason="fix").validated().amount == amount


@pytest.mark.parametrize("amount", [0, MAX_AMOUNT + 1, -MAX_AMOUNT - 1, 2.0, True])
def test_rejects_an_adjustment_amount_that_is_zero_or_out_of_bounds(amount):
    assert rejection(request("adjustment", amount=amount, reason="fix")).code == "invalid_amount"


def test_rejects_an_adjustment_without_a_reason():
    error = rejection(request("adjustment", amount=5))
    assert (error.code, error.field) == ("missing_field", "reason")


@pytest.mark.parametrize(
    "user_id",
    ["@topup", "@revenue", "@anything", "", "has space", "tab\there", "x" * 129, 42, None, "a\n"],
)
def test_rejects_a_user_id_that_is_not_a_plain_wallet_owner(user_id):
    error = rejection(request(user_id=user_id))
    assert (error.code, error.field) == ("invalid_user_id", "user_id")


def test_accepts_a_user_id_of_128_characters_with_an_inner_at_sign():
    assert request(user_id="a@" + "x" * 126).validated().user_id == "a@" + "x" * 126


@pytest.mark.parametrize("user_id", ["ali\x00ce", "\ud800alice", "alice\udfff"])
def test_rejects_a_user_id_postgres_cannot_store(user_id):
    # NUL has no place in PostgreSQL text; a lone surrogate has no UTF-8 encoding.
    assert rejection(request(user_id=user_id)).code == "invalid_user_id"


@pytest.mark.parametrize("to_user_id", ["@revenue", "", "b b", None])
def test_rejects_a_transfer_to_an_invalid_wallet(to_user_id):
    error = rejection(request("transfer", to_user_id=to_user_id))
    assert (error.code, error.field) == ("invalid_user_id", "to_user_id")


def test_rejects_a_transfer_to_the_same_wallet():
    error = rejection(request("transfer", to_user_id="alice"))
    assert (error.code, error.field) == ("same_wallet", "to_user_id")


@pytest.mark.parametrize(
    "asset_code", ["eur", "EU R", "EUR-1", "", "A" * 33, "EUR\n", "ÉUR", 1, None]
)
def test_rejects_a_malformed_asset_code(asset_code):
    error = rejection(request(asset_code=asset_code))
    assert (error.code, error.field) == ("invalid_asset_code", "asset_code")


@pytest.mark.parametrize("asset_code", ["EUR", "GOLD_COINS", "A" * 32, "X1"])
def test_accepts_asset_codes_of_capitals_digits_and_underscores(asset_code):
    assert request(asset_code=asset_code).validated().asset_code == asset_code


def test_rejects_an_unknown_type():
    assert rejection(request("withdrawal")).code == "invalid_type"


@pytest.mark.parametrize("reference_id", [None, "", "r" * 129, 17, "ref\x00", "ref\ud800"])
def test_rejects_a_missing_or_malformed_reference_id(reference_id):
    error = rejection(request(reference_id=reference_id))
    assert error.field == "reference_id"
    assert error.code in {"missing_field", "invalid_field"}


def test_rejects_a_refund_without_an_original_transaction():
    error = rejection(request("refund"))
    assert (error.code, error.field) == ("missing_field", "original_transaction_id")


def test_rejects_a_refund_whose_original_is_not_a_uuid():
    error = rejection(request("refund", original_transaction_id=str(uuid.uuid4())))
    assert error.field == "original_transaction_id"


@pytest.mark.parametrize(
    ("type", "fields", "field"),
    [
        ("topup", {"to_user_id": "bob"}, "to_user_id"),
        ("spend", {"original_transaction_id": uuid.uuid4()}, "original_transaction_id"),
    ],
)
def test_rejects_fields_that_belong_to_another_type(type, fields, field):
    error = rejection(request(type, **fields))
    assert (error.code, error.field) == ("unexpected_field", field)


@pytest.mark.parametrize("name", ["payment_method", "bonus_type", "item_id", "reason"])
def test_rejects_oversized_descriptive_fields(name):
    error = rejection(request(**{name: "x" * 129}))
    assert (error.code, error.field) == ("invalid_field", name)


def test_accepts_metadata_up_to_the_size_limit():
    # {"k":"…"} is 8 characters of framing around the value.
    metadata = {"k": "x" * (MAX_METADATA_BYTES - 8)}
    assert request(metadata=metadata).validated().metadata == metadata


def test_rejects_metadata_over_the_size_limit():
    error = rejection(request(metadata={"k": "x" * (MAX_METADATA_BYTES - 7)}))
    assert (error.code, error.field) == ("metadata_too_large", "metadata")


def test_metadata_limit_is_configurable():
    req = request(metadata={"k": "x" * 100})
    assert req.validated(max_metadata_bytes=200) is req
    with pytest.raises(InvalidRequest) as caught:
        req.validated(max_metadata_bytes=50)
    assert caught.value.code == "metadata_too_large"


@pytest.mark.parametrize(
    "metadata",
    [["a", "list"], "text", None, {"nan": float("nan")}, {"inf": float("inf")}, {"s": {1, 2}}],
)
def test_rejects_metadata_that_is_not_a_json_object(metadata):
    error = rejection(request(metadata=metadata))
    assert (error.code, error.field) == ("invalid_metadata", "metadata")


@pytest.mark.parametrize(
    "metadata",
    [{"note": "a\x00b"}, {"a\x00": 1}, {"deep": [{"x": "\x00"}]}, {"note": "\udc80"}],
)
def test_rejects_metadata_holding_text_postgres_cannot_store(metadata):
    error = rejection(request(metadata=metadata))
    assert (error.code, error.field) == ("invalid_metadata", "metadata")


def test_accepts_metadata_with_any_other_unicode():
    metadata = {"note": "café ☕ 😀", "escaped": "\\u0000 is just text"}
    assert request(metadata=metadata).validated().metadata == metadata


def test_same_body_gives_the_same_fingerprint_and_any_change_a_different_one():
    original = uuid.uuid4()
    req = request("refund", original_transaction_id=original, metadata={"b": 1, "a": 2})
    same = request("refund", original_transaction_id=original, metadata={"a": 2, "b": 1})
    assert req.fingerprint() == same.fingerprint()
    for changed in (
        replace(req, amount=101),
        replace(req, user_id="bob"),
        replace(req, original_transaction_id=uuid.uuid4()),
        replace(req, metadata={"a": 2}),
        replace(req, item_id="sku"),
    ):
        assert changed.fingerprint() != req.fingerprint()


def test_fingerprints_stay_what_they_were_when_stored():
    # Hashes already stored decide replays: the canonical form must never change.
    refund = request(
        "refund",
        reference_id="ref-1",
        asset_code="USD",
        amount=100,
        original_transaction_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        payment_method="card",
        item_id="sku",
        metadata={"z": [1, {"b": "é"}], "a": None},
    )
    hold = TransactionRequest(
        "hold",
        "ref-2",
        "alice",
        "USD",
        5,
        "bob",
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    spend = TransactionRequest("spend", "ref-3", "alice", "USD", 7)
    assert refund.fingerprint() == (
        "72d765276eb8ba12a70dfe627b03a8f9f518df4e4bd2224ecb88a111bb7ba57b"
    )
    assert hold.fingerprint() == "b9c481e981be9490d1ceb5602ecd3067cc8ac44c1669a1aee6d236d801c1e10c"
    assert spend.fingerprint() == "344f1821836b63524876d1eeb8ef565a9aa1d069d1574f9ab5ace1072b9c4748"


@pytest.mark.parametrize(
    ("fields", "credited"),
    [
        ({"type": "topup"}, [("EUR", "alice")]),
        ({"type": "bonus"}, [("EUR", "alice")]),
        ({"type": "adjustment", "amount": 5, "reason": "r"}, [("EUR", "alice")]),
        ({"type": "adjustment", "amount": -5, "reason": "r"}, []),
        ({"type": "spend"}, []),
        ({"type": "refund", "original_transaction_id": uuid.uuid4()}, []),
        ({"type": "transfer", "to_user_id": "bob"}, [("EUR", "bob")]),
        ({"type": "hold"}, []),
        ({"type": "hold", "to_user_id": "shop"}, [("EUR", "shop")]),
    ],
)
def test_only_credited_wallets_are_created_on_first_use(fields, credited):
    assert request(**fields).credited_wallets() == credited
