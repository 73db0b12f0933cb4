"""The ledger's checks of splits, a hold's system account, payouts, exchanges and journals:
what each type may carry, every fault of a leg's or a posting's shape with its message, and
the normalised request that passes (docs/api.md#splits-payouts-exchanges-and-journals)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidRequest
from ledger.transaction_request import MAX_AMOUNT, TransactionRequest

PROPERTY = settings(max_examples=100, deadline=None, database=None)
HOLD_ID = uuid.UUID(int=7)


def request(type: str, **fields: Any) -> TransactionRequest:
    """A valid request of `type`, with `fields` changed (None drops one)."""
    base: dict[str, Any] = {"reference_id": "ref-1"}
    if type in ("capture", "void"):
        base["original_transaction_id"] = HOLD_ID
    elif type == "journal":
        base.update(reason="year-end", postings=[posting()])
    else:
        base.update(user_id="alice", asset_code="EUR", amount=100)
    if type == "refund":
        base["original_transaction_id"] = HOLD_ID
    if type == "exchange":
        base.update(to_asset_code="USD", to_amount=110)
    if type == "transfer" and "splits" not in fields:
        base["to_user_id"] = "bob"
    return TransactionRequest(type=type, **{**base, **fields})


def posting(**changes: Any) -> dict[str, Any]:
    return {"from": "@adjustments", "to": "alice", "asset_code": "EUR", "amount": 5, **changes}


def legs(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    """Legs from (owner, amount): an `@name` goes to a system account, anything else a wallet."""
    return [
        {"to_account" if owner.startswith("@") else "to_user_id": owner, "amount": amount}
        for owner, amount in pairs
    ]


def refusal(req: TransactionRequest) -> tuple[str, str | None, str]:
    with pytest.raises(InvalidRequest) as caught:
        req.validated()
    return caught.value.code, caught.value.field, caught.value.message


# --- splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("type", ["spend", "transfer", "hold", "refund", "capture"])
def test_each_splitting_type_takes_legs_summing_to_its_amount(type):
    split = legs(("bob", 60), ("@fees", 40))
    checked = request(type, splits=split).validated()
    assert checked.splits == split
    # A capture names no amount here: it takes the legs' sum, the others keep theirs.
    assert checked.amount == 100


def test_a_spend_may_split_to_revenue_itself():
    checked = request("spend", splits=legs(("@revenue", 90), ("shop", 10))).validated()
    assert checked.splits == [
        {"to_account": "@revenue", "amount": 90},
        {"to_user_id": "shop", "amount": 10},
    ]


def test_a_capture_that_splits_without_an_amount_takes_the_legs_sum():
    capture = request("capture", splits=legs(("bob", 30), ("@payouts", 12)))
    checked = capture.validated()
    assert capture.amount is None
    assert checked.amount == 42
    assert checked.splits == legs(("bob", 30), ("@payouts", 12))
    assert checked.original_transaction_id == HOLD_ID


def test_a_capture_that_splits_with_an_amount_must_match_it():
    code, field, message = refusal(request("capture", amount=50, splits=legs(("bob", 30))))
    assert (code, field, message) == (
        "invalid_splits",
        "splits",
        "splits: amounts sum to 30, amount is 50",
    )


def test_a_capture_whose_legs_sum_past_the_largest_amount_is_refused():
    code, _, message = refusal(request("capture", splits=legs(("bob", MAX_AMOUNT), ("carol", 1))))
    assert code == "invalid_splits"
    assert message == f"splits: amounts sum to {MAX_AMOUNT + 1}, more than {MAX_AMOUNT}"


def test_normalised_legs_are_plain_dicts_of_the_contract_keys_apart_from_the_sent_ones():
    sent = [{"amount": 100, "to_user_id": "bob"}]
    checked = request("transfer", splits=sent).validated()
    assert checked.splits == [{"to_user_id": "bob", "amount": 100}]
    assert checked.splits is not sent and checked.splits[0] is not sent[0]
    assert type(checked.splits[0]["amount"]) is int


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ([], "splits: 1 to 50 legs"),
        (legs(*[(f"u{i}", 2) for i in range(51)]), "splits: 1 to 50 legs"),
        ({"to_user_id": "bob", "amount": 100}, "splits: 1 to 50 legs"),
        ("bob", "splits: 1 to 50 legs"),
        ([["bob", 100]], "splits[0]: each of the legs is a JSON object"),
        (
            [
                {"to_user_id": "bob", "amount": 50},
                {"to_user_id": "c", "to_account": "@x", "amount": 50},
            ],
            "splits[1]: to_user_id and to_account are exclusive",
        ),
        ([{"amount": 100}], "splits[0]: to_user_id or to_account is required"),
        ([{"to_user_id": "bob", "amount": 100, "note": "x"}], "splits[0]: unknown key 'note'"),
        ([{"to_user_id": "bob"}], "splits[0]: amount is required"),
        (legs(("bob", 0)), "splits[0]: amount must be between 1 and " + str(MAX_AMOUNT)),
        (legs(("bob", -100)), "splits[0]: amount must be between 1 and " + str(MAX_AMOUNT)),
        (legs(("bob", MAX_AMOUNT + 1)), f"splits[0]: amount must be between 1 and {MAX_AMOUNT}"),
        (
            [{"to_user_id": "bob", "amount": 100.0}],
            "splits[0]: amount must be an integer of minor units",
        ),
        (
            [{"to_user_id": "bob", "amount": "100"}],
            "splits[0]: amount must be an integer of minor units",
        ),
        (
            [{"to_user_id": "bob", "amount": True}],
            "splits[0]: amount must be an integer of minor units",
        ),
        (legs(("bob", 50), ("bob", 50)), "splits[1]: destination named twice"),
        (legs(("@fees", 50), ("@fees", 50)), "splits[1]: destination named twice"),
        (legs(("alice", 100)), "splits[0]: the source wallet cannot be a destination"),
        (legs(("bob", 60), ("carol", 30)), "splits: amounts sum to 90, amount is 100"),
        (legs(("bob", 60), ("carol", 50)), "splits: amounts sum to 110, amount is 100"),
        (
            [{"to_user_id": "@bob", "amount": 100}],
            "splits[0]: to_user_id must not start with '@' (system accounts do)",
        ),
        ([{"to_user_id": "", "amount": 100}], "splits[0]: to_user_id must be 1-128 characters"),
        (
            [{"to_account": "revenue", "amount": 100}],
            "splits[0]: to_account must match @[a-z0-9_]{1,32}",
        ),
        (
            [{"to_account": "@Fees", "amount": 100}],
            "splits[0]: to_account must match @[a-z0-9_]{1,32}",
        ),
        (
            [{"to_account": "@" + "x" * 33, "amount": 100}],
            "splits[0]: to_account must match @[a-z0-9_]{1,32}",
        ),
        (
            [{"to_account": "@fees\n", "amount": 100}],
            "splits[0]: to_account must match @[a-z0-9_]{1,32}",
        ),
    ],
)
def test_every_fault_of_a_legs_shape_is_invalid_splits_naming_it(splits, message):
    assert refusal(request("spend", splits=splits)) == ("invalid_splits", "splits", message)


@pytest.mark.parametrize(
    "type", ["topup", "bonus", "adjustment", "void", "payout", "exchange", "journal"]
)
def test_types_that_do_not_split_refuse_splits(type):
    extra = {"reason": "fix"} if type == "adjustment" else {}
    code, field, _ = refusal(request(type, splits=legs(("bob", 100)), **extra))
    assert (code, field) == ("unexpected_field", "splits")


def test_a_transfer_names_to_user_id_or_splits_not_both():
    code, field, message = refusal(
        request("transfer", to_user_id="bob", splits=legs(("carol", 100)))
    )
    assert (code, field) == ("invalid_splits", "splits")
    assert message == "splits: a transfer names splits or to_user_id, not both"


def test_a_transfer_without_a_target_or_splits_still_needs_its_target():
    code, field, _ = refusal(request("transfer", to_user_id=None))
    assert (code, field) == ("invalid_user_id", "to_user_id")


# --- a hold's destination ------------------------------------------------------------------


def test_a_hold_may_pay_a_system_account():
    checked = request("hold", to_account="@payouts").validated()
    assert (checked.to_account, checked.to_user_id, checked.splits) == ("@payouts", None, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"to_user_id": "bob", "to_account": "@payouts"}, ("unexpected_field", "to_account")),
        ({"to_user_id": "bob", "splits": legs(("carol", 100))}, ("invalid_splits", "splits")),
        ({"to_account": "@payouts", "splits": legs(("carol", 100))}, ("invalid_splits", "splits")),
        ({"to_account": "payouts"}, ("invalid_field", "to_account")),
        ({"to_account": 5}, ("invalid_field", "to_account")),
    ],
)
def test_a_hold_names_at_most_one_destination_and_a_well_formed_one(fields, expected):
    assert refusal(request("hold", **fields))[:2] == expected


@pytest.mark.parametrize("type", ["spend", "transfer", "capture", "void", "payout", "journal"])
def test_only_holds_name_a_system_account_destination(type):
    assert refusal(request(type, to_account="@payouts"))[:2] == ("unexpected_field", "to_account")


# --- payouts -------------------------------------------------------------------------------


def test_a_payout_takes_a_method_and_a_destination():
    payout = request("payout", payout_method="sepa", destination="DE89 **** **** 3000")
    assert payout.validated() is payout


@pytest.mark.parametrize("name", ["payout_method", "destination"])
@pytest.mark.parametrize("value", ["", "x" * 129, "a\x00b", 7])
def test_payout_text_is_1_to_128_storable_characters(name, value):
    assert refusal(request("payout", **{name: value}))[:2] == ("invalid_field", name)


@pytest.mark.parametrize("name", ["payout_method", "destination"])
@pytest.mark.parametrize("type", ["topup", "spend", "transfer", "exchange", "journal"])
def test_only_payouts_carry_payout_fields(type, name):
    assert refusal(request(type, **{name: "x"}))[:2] == ("unexpected_field", name)


@pytest.mark.parametrize("name", ["to_user_id", "original_transaction_id"])
def test_a_payout_names_no_other_wallet_or_original(name):
    value = "bob" if name == "to_user_id" else HOLD_ID
    assert refusal(request("payout", **{name: value}))[:2] == ("unexpected_field", name)


# --- exchanges -----------------------------------------------------------------------------


@pytest.mark.parametrize("buyer", [None, "bob", "alice"])
def test_an_exchange_buys_for_its_own_wallet_or_another(buyer):
    exchange = request("exchange", to_user_id=buyer)
    assert exchange.validated() is exchange


def test_an_exchange_cannot_buy_the_asset_it_sells():
    code, field, _ = refusal(request("exchange", to_asset_code="EUR"))
    assert (code, field) == ("same_asset", "to_asset_code")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"to_asset_code": None}, ("missing_field", "to_asset_code")),
        ({"to_amount": None}, ("missing_field", "to_amount")),
        ({"to_asset_code": "usd"}, ("invalid_asset_code", "to_asset_code")),
        ({"to_amount": 0}, ("invalid_amount", "to_amount")),
        ({"to_amount": MAX_AMOUNT + 1}, ("invalid_amount", "to_amount")),
        ({"to_amount": "110"}, ("invalid_amount", "to_amount")),
        ({"to_user_id": "@exchange"}, ("invalid_user_id", "to_user_id")),
        ({"amount": -5}, ("invalid_amount", "amount")),
    ],
)
def test_an_exchange_needs_a_valid_asset_and_amount_bought(fields, expected):
    assert refusal(request("exchange", **fields))[:2] == expected


@pytest.mark.parametrize("name", ["to_asset_code", "to_amount"])
@pytest.mark.parametrize("type", ["topup", "transfer", "payout", "hold"])
def test_only_exchanges_carry_the_bought_side(type, name):
    value = "USD" if name == "to_asset_code" else 5
    assert refusal(request(type, **{name: value}))[:2] == ("unexpected_field", name)


# --- journals ------------------------------------------------------------------------------


def test_a_journal_comes_back_with_its_postings_normalised():
    sent = [{"amount": 5, "asset_code": "EUR", "to": "alice", "from": "@adjustments"}]
    checked = request("journal", postings=sent).validated()
    assert checked.postings == [posting()]
    assert list(checked.postings[0]) == ["from", "to", "asset_code", "amount"]
    assert (checked.user_id, checked.asset_code, checked.amount) == (None, None, None)


def test_a_journal_needs_a_reason_and_postings():
    assert refusal(request("journal", reason=None))[:2] == ("missing_field", "reason")
    assert refusal(request("journal", postings=None))[:2] == ("missing_field", "postings")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_id", "alice"),
        ("asset_code", "EUR"),
        ("amount", 5),
        ("to_user_id", "bob"),
        ("item_id", "sku"),
        ("payment_method", "card"),
        ("bonus_type", "x"),
        ("original_transaction_id", HOLD_ID),
        ("expires_in", 60),
    ],
)
def test_a_journal_carries_no_field_of_another_type(name, value):
    assert refusal(request("journal", **{name: value}))[:2] == ("unexpected_field", name)


@pytest.mark.parametrize("type", ["topup", "spend", "adjustment", "exchange"])
def test_only_journals_carry_postings(type):
    extra = {"reason": "fix"} if type == "adjustment" else {}
    assert refusal(request(type, postings=[posting()], **extra))[:2] == (
        "unexpected_field",
        "postings",
    )


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        ([], "postings: 1 to 100 postings"),
        ([posting()] * 101, "postings: 1 to 100 postings"),
        (posting(), "postings: 1 to 100 postings"),
        ([posting(), "x"], "postings[1]: each of the postings is a JSON object"),
        ([{**posting(), "memo": "x"}], "postings[0]: unknown key 'memo'"),
        ([{k: v for k, v in posting().items() if k != "to"}], "postings[0]: to is required"),
        ([posting(to="@adjustments")], "postings[0]: from and to are the same account"),
        (
            [posting(), posting(**{"from": "bob", "to": "bob"})],
            "postings[1]: from and to are the same account",
        ),
        (
            [posting(**{"from": "@Bad"})],
            "postings[0]: from is a user id or a system account: must match @[a-z0-9_]{1,32}",
        ),
        (
            [posting(to="")],
            "postings[0]: to is a user id or a system account: must be 1-128 characters",
        ),
        ([posting(asset_code="eur")], "postings[0]: asset_code must match [A-Z0-9_]{1,32}"),
        ([posting(asset_code=None)], "postings[0]: asset_code must match [A-Z0-9_]{1,32}"),
        ([posting(amount=0)], f"postings[0]: amount must be between 1 and {MAX_AMOUNT}"),
        ([posting(amount=-5)], f"postings[0]: amount must be between 1 and {MAX_AMOUNT}"),
        ([posting(amount=5.0)], "postings[0]: amount must be an integer of minor units"),
    ],
)
def test_every_fault_of_a_postings_shape_is_invalid_postings_naming_it(postings, message):
    assert refusal(request("journal", postings=postings)) == (
        "invalid_postings",
        "postings",
        message,
    )


def test_a_journal_may_post_between_wallets_and_system_accounts_of_several_assets():
    lines = [
        posting(),
        posting(**{"from": "alice", "to": "bob", "asset_code": "USD", "amount": MAX_AMOUNT}),
        posting(**{"from": "@fees", "to": "@revenue"}),
    ]
    assert request("journal", postings=lines).validated().postings == lines


# --- what intake reads off a request -------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "credited"),
    [
        (request("exchange"), [("USD", "alice")]),
        (request("exchange", to_user_id="bob"), [("USD", "bob")]),
        (request("spend", splits=legs(("bob", 100))), []),
        (request("transfer", splits=legs(("bob", 100))), []),
        (request("payout"), []),
        (
            request(
                "journal",
                postings=[
                    posting(),
                    posting(**{"from": "alice", "to": "bob", "asset_code": "USD"}),
                    posting(**{"from": "bob", "to": "@fees"}),
                    posting(**{"from": "@bonus", "to": "alice"}),
                ],
            ),
            [("EUR", "alice"), ("USD", "bob")],
        ),
    ],
)
def test_credited_wallets_are_an_exchanges_buyer_and_a_journals_wallet_targets(req, credited):
    assert req.validated().credited_wallets() == credited


def test_named_system_accounts_and_assets_are_every_one_the_request_names():
    spend = request("spend", splits=legs(("@fees", 10), ("bob", 20), ("@revenue", 70)))
    assert spend.validated().named_system_accounts() == {"@fees", "@revenue"}
    assert spend.validated().named_assets() == set()
    hold = request("hold", to_account="@payouts")
    assert hold.named_system_accounts() == {"@payouts"}
    journal = request(
        "journal",
        postings=[posting(), posting(**{"from": "bob", "to": "@fees", "asset_code": "PTS"})],
    )
    assert journal.validated().named_system_accounts() == {"@adjustments", "@fees"}
    assert journal.validated().named_assets() == {"EUR", "PTS"}
    assert request("exchange").named_assets() == {"USD"}
    assert request("topup").named_system_accounts() == set()
    assert request("topup").named_assets() == set()


def test_new_fields_count_in_the_fingerprint_only_when_given():
    plain = request("spend")
    assert plain.fingerprint() == request("spend", splits=None, to_account=None).fingerprint()
    split = request("spend", splits=legs(("bob", 100)))
    assert split.fingerprint() != plain.fingerprint()
    assert split.fingerprint() == request("spend", splits=legs(("bob", 100))).fingerprint()
    assert split.fingerprint() != request("spend", splits=legs(("carol", 100))).fingerprint()
    exchange = request("exchange")
    assert exchange.fingerprint() != request("exchange", to_amount=111).fingerprint()


# --- properties ----------------------------------------------------------------------------

owners = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True).filter(lambda o: o != "alice") | (
    st.from_regex(r"@[a-z0-9_]{1,12}", fullmatch=True)
)
split_lists = st.lists(
    st.tuples(owners, st.integers(1, 10**30)),
    min_size=1,
    max_size=50,
    unique_by=lambda leg: leg[0],
)


@PROPERTY
@given(pairs=split_lists, type=st.sampled_from(["spend", "transfer", "hold", "refund", "capture"]))
def test_any_splits_whose_sum_is_the_amount_validate_unchanged(pairs, type):
    split = legs(*pairs)
    total = sum(amount for _, amount in pairs)
    checked = request(type, amount=total, splits=split).validated()
    assert (checked.splits, checked.amount) == (split, total)


@PROPERTY
@given(pairs=split_lists, data=st.data())
def test_changing_one_legs_amount_breaks_the_sum(pairs, data):
    total = sum(amount for _, amount in pairs)
    index = data.draw(st.integers(0, len(pairs) - 1))
    owner, amount = pairs[index]
    changed = data.draw(st.integers(1, 10**30).filter(lambda a: a != amount))
    mutated = [*pairs[:index], (owner, changed), *pairs[index + 1 :]]
    code, field, message = refusal(request("spend", amount=total, splits=legs(*mutated)))
    assert (code, field) == ("invalid_splits", "splits")
    assert message == f"splits: amounts sum to {total - amount + changed}, amount is {total}"
