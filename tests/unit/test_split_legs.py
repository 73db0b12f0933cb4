"""The legs of split payments in memory: how an amount is shared among them, how refunds
take money back from them, who may pay and who may receive, and worked examples.

No database and no broker; test_split_rules.py has the properties over mixed books.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, replace
from fractions import Fraction
from math import ceil, floor

from hypothesis import given
from hypothesis import strategies as st

from ledger.codes import RejectionCode
from ledger.legs import Leg, Posting, allocate_pro_rata
from ledger.money import MAX_AMOUNT
from ledger.rules import AccountKey, AccountState, Book, Judgement, Proposal
from ledger.vocabulary import TransactionType
from tests.unit.test_posting_rules import PROPERTY_SETTINGS, copy_accounts
from tests.unit.test_split_rules import (
    ACTIVE,
    APPLIED,
    CLOCK,
    CLOSED,
    EXCHANGE,
    EXPIRES_AT,
    FROZEN,
    REJECTED,
    SYSTEMS,
    draw_parts,
    recorded,
    system_state,
    wallet_state,
)

TENANT = uuid.UUID(int=1)
EUR, GOLD = "EUR", "GOLD_COINS"
SPEND, TRANSFER, REFUND = TransactionType.SPEND, TransactionType.TRANSFER, TransactionType.REFUND
HOLD, CAPTURE, JOURNAL = TransactionType.HOLD, TransactionType.CAPTURE, TransactionType.JOURNAL
ids = (uuid.UUID(int=200_000 + n) for n in itertools.count())


def key(owner: str, asset: str = EUR) -> AccountKey:
    return (TENANT, asset, owner)


def open_book(wallets: list[AccountState], assets: tuple[str, ...] = (EUR,)) -> Book:
    """A book of one tenant: the wallets (each in every asset) and every system account,
    @topup holding what the wallets hold."""
    account_ids = itertools.count(1)
    accounts: dict[AccountKey, AccountState] = {}
    for asset in assets:
        for state in wallets:
            accounts[key(state.owner, asset)] = replace(
                state, id=next(account_ids), asset_code=asset
            )
        for system in SYSTEMS:
            balance = -sum(w.balance for w in wallets) if system == "@topup" else 0
            accounts[key(system, asset)] = system_state(next(account_ids), system, asset, balance)
    return Book(accounts, now=CLOCK)


def wallet(
    owner: str,
    balance: int = 0,
    *,
    status: str = ACTIVE,
    credit_limit: int = 0,
    pending: int = 0,
) -> AccountState:
    return wallet_state(
        0, owner, EUR, status=status, credit_limit=credit_limit, balance=balance, pending=pending
    )


def split(
    payer: str, *legs: tuple[str, int], type: TransactionType = SPEND, asset: str = EUR
) -> Proposal:
    splits = tuple(Leg(owner, amount) for owner, amount in legs)
    amount = sum(leg.amount for leg in splits)
    return Proposal(next(ids), TENANT, type, asset, amount, payer, splits=splits)


def refund_of(
    original: Proposal, amount: int, *legs: tuple[str, int], paid: tuple[Leg, ...] | None = None
) -> Proposal:
    """A refund as the engine hands it to the book: carrying its original's legs."""
    return Proposal(
        next(ids),
        TENANT,
        REFUND,
        original.asset_code,
        amount,
        original.user_id,
        original_transaction_id=original.id,
        splits=tuple(Leg(owner, part) for owner, part in legs) or None,
        original_legs=paid or original.splits,
    )


def journal(*postings: tuple[str, str, int]) -> Proposal:
    entries = tuple(Posting(source, target, EUR, amount) for source, target, amount in postings)
    return Proposal(next(ids), TENANT, JOURNAL, None, None, None, postings=entries)


def queue_in(book: Book, *proposals: Proposal) -> None:
    for proposal in proposals:
        book.originals[proposal.id] = recorded(proposal)


def balances(book: Book, *owners: str) -> tuple[int, ...]:
    return tuple(book.accounts[key(owner)].balance for owner in owners)


def outcome(judgement: Judgement) -> tuple[object, ...]:
    return (judgement.status, judgement.code, judgement.detail)


# --- sharing an amount among legs ---------------------------------------------------------

WEIGHTS = st.lists(
    st.one_of(st.integers(0, 1_000), st.sampled_from([0, 1, 3, 10**9, MAX_AMOUNT])),
    min_size=1,
    max_size=50,
).filter(lambda weights: sum(weights) > 0)


def exact_shares(total: int, weights: list[int]) -> list[Fraction]:
    return [Fraction(total * weight, sum(weights)) for weight in weights]


@PROPERTY_SETTINGS
@given(WEIGHTS, st.data())
def test_pro_rata_shares_sum_to_the_total_round_the_exact_share_and_break_ties_early(
    weights: list[int], data: st.DataObject
) -> None:
    total = data.draw(st.one_of(st.integers(0, sum(weights)), st.just(sum(weights))))
    shares = allocate_pro_rata(total, weights)

    assert sum(shares) == total
    exact = exact_shares(total, weights)
    for share, weight, part in zip(shares, weights, exact, strict=True):
        assert share in (floor(part), ceil(part))
        assert 0 <= share <= weight
    # The units left over went to the largest remainders, ties to the earlier weight.
    remainders = [part - floor(part) for part in exact]
    rounded_up = [i for i, share in enumerate(shares) if share > exact[i]]
    rounded_down = [i for i, share in enumerate(shares) if share < exact[i]]
    for up, down in itertools.product(rounded_up, rounded_down):
        assert (remainders[up], -up) > (remainders[down], -down)
    assert allocate_pro_rata(total, list(weights)) == shares


@PROPERTY_SETTINGS
@given(WEIGHTS, st.integers(1, 10**6))
def test_pro_rata_shares_of_more_than_the_weights_still_sum_to_the_total(
    weights: list[int], beyond: int
) -> None:
    total = sum(weights) + beyond
    shares = allocate_pro_rata(total, weights)

    assert sum(shares) == total
    for share, part in zip(shares, exact_shares(total, weights), strict=True):
        assert share in (floor(part), ceil(part))


# --- refunds of a split spend -------------------------------------------------------------

LEG_POOL = (*(f"u{n:02}" for n in range(50)), "@revenue", "@fees", "@tax")
LEG_AMOUNTS = st.one_of(st.integers(1, 1_000), st.sampled_from([1, 1, 2, 3, 10_000]))
LEG_STATUSES = st.sampled_from([ACTIVE] * 8 + [FROZEN])
# What a leg wallet reserves for a hold of its own once paid: that much it cannot give back.
LEG_RESERVED = st.sampled_from([0] * 6 + [1, 500])
REFUND_COUNTS = st.integers(1, 10)
STRANGER = "u99"  # never a leg


@dataclass(frozen=True)
class RefundRun:
    book: Book
    spend: Proposal
    reserved: dict[str, int]
    refunds: list[Proposal]


@st.composite
def refund_runs(draw: st.DrawFn) -> RefundRun:
    """A buyer's split spend to 2-50 legs, then refunds of it, pro rata or leg by leg."""
    owners = draw(st.lists(st.sampled_from(LEG_POOL), min_size=2, max_size=50, unique=True))
    legs = tuple(Leg(owner, draw(LEG_AMOUNTS)) for owner in owners)
    spend = split("buyer", *((leg.owner, leg.amount) for leg in legs))
    assert spend.amount is not None
    # Leg wallets start empty; some are frozen.
    book = open_book([wallet("buyer", spend.amount)])
    reserved = {}
    for n, leg in enumerate(legs, start=len(book.accounts) + 1):
        if not leg.owner.startswith("@"):
            status = draw(LEG_STATUSES)
            book.accounts[key(leg.owner)] = wallet_state(n, leg.owner, EUR, status=status)
            reserved[leg.owner] = min(leg.amount, draw(LEG_RESERVED))
    queue_in(book, spend)

    refunds = []
    for _ in range(draw(REFUND_COUNTS)):
        if draw(st.booleans()):
            amount = draw(st.sampled_from([1, spend.amount, max(1, spend.amount // 3), 0]))
            refunds.append(refund_of(spend, amount or draw(st.integers(1, spend.amount))))
            continue
        asked = [
            (leg.owner, draw(st.integers(0, leg.amount // 4 + 1)))
            for leg in legs
            if draw(st.integers(0, 2)) == 0
        ]
        if draw(st.integers(0, 9)) == 0:
            asked.append((STRANGER, 1))
        asked = [(owner, part) for owner, part in asked if part] or [(legs[0].owner, 1)]
        refunds.append(refund_of(spend, sum(part for _, part in asked), *asked))
    return RefundRun(book, spend, reserved, refunds)


def expected_refund(
    refund: Proposal,
    spend: Proposal,
    left: dict[str, int],
    accounts: dict[AccountKey, AccountState],
) -> tuple[tuple[object, ...], tuple[Leg, ...]]:
    """How the refund rules decide a refund of the spend, given what each leg has left to
    give back: the outcome, and the legs that give when it is applied."""
    assert spend.splits is not None and refund.amount is not None
    if sum(left.values()) < refund.amount:
        return (REJECTED, RejectionCode.REFUND_EXCEEDS_ORIGINAL, None), ()
    owners = [leg.owner for leg in spend.splits]
    if refund.splits is None:
        parts = allocate_pro_rata(refund.amount, [left[owner] for owner in owners])
    else:
        asked = {leg.owner: leg.amount for leg in refund.splits}
        if set(asked) - set(owners):
            return (REJECTED, RejectionCode.INVALID_SPLITS, f"not a leg: {STRANGER}"), ()
        parts = [asked.get(owner, 0) for owner in owners]
        for owner, part in zip(owners, parts, strict=True):
            if part > left[owner]:
                return (REJECTED, RejectionCode.REFUND_EXCEEDS_ORIGINAL, f"leg {owner}"), ()
    givers = tuple(Leg(owner, part) for owner, part in zip(owners, parts, strict=True) if part)
    for leg in givers:
        state = accounts[key(leg.owner)]
        if state.is_system:
            continue
        if state.status == FROZEN:
            return (REJECTED, RejectionCode.WALLET_FROZEN, f"leg {leg.owner}"), ()
        if state.balance - state.pending + state.credit_limit < leg.amount:
            return (REJECTED, RejectionCode.INSUFFICIENT_FUNDS, f"leg {leg.owner}"), ()
    return (APPLIED, None, None), givers


@PROPERTY_SETTINGS
@given(refund_runs())
def test_refunds_of_a_split_spend_never_take_more_from_a_leg_than_it_received(
    run: RefundRun,
) -> None:
    book, spend = run.book, run.spend
    assert spend.splits is not None and spend.amount is not None
    assert book.judge(spend).status == APPLIED
    for owner, amount in run.reserved.items():
        book.accounts[key(owner)].pending = amount
    left = {leg.owner: leg.amount for leg in spend.splits}
    refunded = 0

    for refund in run.refunds:
        assert refund.amount is not None
        expected, givers = expected_refund(refund, spend, left, book.accounts)
        before = copy_accounts(book.accounts)
        judgement = book.judge(refund)

        assert outcome(judgement) == expected
        if judgement.status != APPLIED:
            assert book.accounts == before
            continue
        assert judgement.legs == givers
        assert sum(leg.amount for leg in givers) == refund.amount
        if refund.splits is None:  # pro rata to what each leg had left, whole units
            whole = sum(left.values())
            for leg in givers:
                part = Fraction(refund.amount * left[leg.owner], whole)
                assert leg.amount in (floor(part), ceil(part))
        for leg in givers:
            assert 0 < leg.amount <= left[leg.owner]
            left[leg.owner] -= leg.amount
        refunded += refund.amount

    assert refunded <= spend.amount
    assert book.refunded.get(spend.id, 0) == refunded
    for leg in spend.splits:
        taken = leg.amount - left[leg.owner]
        assert book.leg_refunded.get((spend.id, leg.owner), 0) == taken
        assert book.accounts[key(leg.owner)].balance == leg.amount - taken
    assert book.accounts[key("buyer")].balance == refunded


# --- who may pay and who may receive ------------------------------------------------------

PAYER_STATUSES = st.sampled_from([ACTIVE] * 4 + [FROZEN, CLOSED])
RECEIVER_STATUSES = st.sampled_from([ACTIVE] * 3 + [FROZEN, CLOSED])
CREDIT_LIMITS = st.sampled_from([0, 100, 1_000])
RECEIVERS = ("bob", "cat", "dan", "@fees", "@revenue")
PAYMENT_KINDS = st.sampled_from(["spend", "transfer", "journal", "journal"])
AMOUNTS = st.integers(1, 2_500)


@dataclass(frozen=True)
class Payment:
    book: Book
    proposal: Proposal


@st.composite
def payments(draw: st.DrawFn) -> Payment:
    """ann (maybe frozen, closed or on credit) pays some of bob, cat, dan and system
    accounts (maybe frozen or closed), in one split spend or transfer, or a journal entry."""
    credit_limit, pending = draw(CREDIT_LIMITS), draw(st.sampled_from([0, 0, 100]))
    ann = wallet(
        "ann",
        draw(st.integers(pending - credit_limit, 1_000)),
        status=draw(PAYER_STATUSES),
        credit_limit=credit_limit,
        pending=pending,
    )
    others = [wallet(owner, 50, status=draw(RECEIVER_STATUSES)) for owner in RECEIVERS[:3]]
    book = open_book([ann, *others])
    # Often exactly what ann may spend, or one unit more: the credit limit's edge.
    edge = ann.available()
    amount = draw(st.sampled_from([edge, edge + 1, 0]).filter(lambda a: a > 0) | AMOUNTS)
    count = draw(st.integers(1, len(RECEIVERS)))
    owners = draw(st.permutations(RECEIVERS))[:count]
    legs = list(zip(owners, draw_parts(draw, amount, count), strict=False))
    kind = draw(PAYMENT_KINDS)
    if kind != "journal":
        return Payment(book, split("ann", *legs, type=TransactionType(kind)))
    postings = [("ann", owner, part) for owner, part in legs]
    if draw(st.booleans()):  # something back to ann in the same entry
        postings.append((owners[0], "ann", draw(st.integers(1, 500))))
    return Payment(book, journal(*draw(st.permutations(postings))))


def broken_payment_rules(
    proposal: Proposal, accounts: dict[AccountKey, AccountState]
) -> set[RejectionCode]:
    """The rules a split payment or journal entry breaks, against the states before it:
    closed wallets neither pay nor receive, frozen ones receive only, and the payer's net
    debit stays within its available funds (balance, less holds, plus credit)."""
    if proposal.postings is not None:
        moves = [(p.source, p.target, p.amount) for p in proposal.postings]
    else:
        moves = [("ann", leg.owner, leg.amount) for leg in proposal.splits or ()]
    net = {owner: 0 for move in moves for owner in move[:2]}
    for source, target, amount in moves:
        net[source] -= amount
        net[target] += amount
    broken: set[RejectionCode] = set()
    for owner in net:
        state = accounts[key(owner)]
        if not state.is_system and state.status == CLOSED:
            broken.add(RejectionCode.WALLET_CLOSED)
    payers = {source for source, _, _ in moves}
    for owner in payers:
        state = accounts[key(owner)]
        if state.is_system:
            continue
        if state.status == FROZEN:
            broken.add(RejectionCode.WALLET_FROZEN)
        if state.available() < -net[owner]:
            broken.add(RejectionCode.INSUFFICIENT_FUNDS)
    return broken


@PROPERTY_SETTINGS
@given(payments())
def test_a_payment_is_applied_exactly_when_no_payer_is_frozen_or_short_and_no_one_closed(
    payment: Payment,
) -> None:
    book, proposal = payment.book, payment.proposal
    before = copy_accounts(book.accounts)
    broken = broken_payment_rules(proposal, before)
    judgement = book.judge(proposal)

    if judgement.status == REJECTED:
        assert judgement.code in broken
        assert book.accounts == before
        return
    assert broken == set()
    for k, after in book.accounts.items():
        if after.is_system:
            continue
        # Down to minus the credit limit, never below; frozen wallets received their part.
        assert after.balance >= -after.credit_limit
        if before[k].status == FROZEN:
            assert after.balance >= before[k].balance
    moved = {k: book.accounts[k].balance - before[k].balance for k in before}
    if proposal.splits:
        for leg in proposal.splits:
            assert moved[key(leg.owner)] == leg.amount
        assert moved[key("ann")] == -(proposal.amount or 0)


# --- examples -----------------------------------------------------------------------------


def test_a_marketplace_order_pays_each_leg_and_a_partial_refund_takes_back_pro_rata() -> None:
    book = open_book([wallet("buyer", 10_000), wallet("seller")])
    order = split("buyer", ("seller", 9_000), ("@fees", 800), ("@tax", 200))
    queue_in(book, order)

    judgement = book.judge(order)
    assert [(line.account.owner, line.amount) for line in judgement.lines] == [
        ("buyer", -10_000),
        ("seller", 9_000),
        ("@fees", 800),
        ("@tax", 200),
    ]
    refund = book.judge(refund_of(order, 5_000))
    assert refund.legs == (Leg("seller", 4_500), Leg("@fees", 400), Leg("@tax", 100))
    assert balances(book, "buyer", "seller", "@fees", "@tax") == (5_000, 4_500, 400, 100)
    assert book.refunded[order.id] == 5_000


def test_a_refund_of_one_unit_of_equal_legs_goes_to_the_first_leg() -> None:
    book = open_book([wallet("buyer", 300), wallet("bob"), wallet("cat"), wallet("dan")])
    order = split("buyer", ("bob", 100), ("cat", 100), ("dan", 100))
    queue_in(book, order)
    book.judge(order)

    assert book.judge(refund_of(order, 1)).legs == (Leg("bob", 1),)
    # bob now has the least left: the next unit comes from cat.
    assert book.judge(refund_of(order, 1)).legs == (Leg("cat", 1),)
    assert balances(book, "bob", "cat", "dan") == (99, 99, 100)


def test_a_refund_leg_by_leg_takes_exactly_what_it_names_from_legs_of_the_original() -> None:
    book = open_book([wallet("buyer", 1_000), wallet("seller")])
    order = split("buyer", ("seller", 900), ("@fees", 100))
    queue_in(book, order)
    book.judge(order)

    assert outcome(book.judge(refund_of(order, 5, ("@tax", 5)))) == (
        REJECTED,
        RejectionCode.INVALID_SPLITS,
        "not a leg: @tax",
    )
    assert outcome(book.judge(refund_of(order, 101, ("@fees", 101)))) == (
        REJECTED,
        RejectionCode.REFUND_EXCEEDS_ORIGINAL,
        "leg @fees",
    )
    assert book.judge(refund_of(order, 100, ("@fees", 100))).legs == (Leg("@fees", 100),)
    # What is left is all the seller's: a pro rata refund takes it from there.
    assert book.judge(refund_of(order, 900)).legs == (Leg("seller", 900),)
    assert balances(book, "buyer", "seller", "@fees") == (1_000, 0, 0)


def test_a_leg_that_cannot_give_its_part_back_rejects_the_whole_refund_and_is_named() -> None:
    book = open_book([wallet("buyer", 1_000), wallet("seller"), wallet("agent")])
    order = split("buyer", ("seller", 600), ("agent", 400))
    queue_in(book, order)
    book.judge(order)
    book.accounts[key("agent")].status = FROZEN
    before = copy_accounts(book.accounts)

    assert outcome(book.judge(refund_of(order, 500))) == (
        REJECTED,
        RejectionCode.WALLET_FROZEN,
        "leg agent",
    )
    assert book.accounts == before
    assert book.judge(refund_of(order, 300, ("seller", 300))).status == APPLIED


def test_a_partial_capture_of_a_split_hold_pays_each_leg_pro_rata() -> None:
    book = open_book([wallet("buyer", 1_000), wallet("seller")])
    legs = (Leg("seller", 700), Leg("@fees", 300))
    hold = Proposal(
        next(ids), TENANT, HOLD, EUR, 1_000, "buyer", expires_at=EXPIRES_AT, splits=legs
    )
    capture = Proposal(
        next(ids), TENANT, CAPTURE, EUR, 501, "buyer", original_transaction_id=hold.id, splits=legs
    )
    queue_in(book, hold, capture)
    assert book.judge(hold).hold is not None
    assert book.holds[hold.id].destination_account_id is None

    judgement = book.judge(capture)
    assert judgement.legs == (Leg("seller", 351), Leg("@fees", 150))
    assert balances(book, "buyer", "seller", "@fees") == (499, 351, 150)
    assert book.accounts[key("buyer")].pending == 0
    # A refund of the capture takes back from the legs it paid, not from the hold's.
    refund = book.judge(refund_of(capture, 501, paid=legs))
    assert refund.legs == (Leg("seller", 351), Leg("@fees", 150))


def test_a_capture_pays_no_leg_whose_share_rounds_to_nothing_and_its_refunds_cannot_name_it() -> (
    None
):
    book = open_book([wallet("buyer", 300), wallet("bob"), wallet("cat")])
    legs = (Leg("bob", 100), Leg("cat", 100), Leg("@fees", 100))
    hold = Proposal(next(ids), TENANT, HOLD, EUR, 300, "buyer", expires_at=EXPIRES_AT, splits=legs)
    capture = Proposal(
        next(ids), TENANT, CAPTURE, EUR, 1, "buyer", original_transaction_id=hold.id, splits=legs
    )
    queue_in(book, hold, capture)
    book.judge(hold)

    judgement = book.judge(capture)
    assert judgement.legs == (Leg("bob", 1),)
    assert [(line.account.owner, line.amount) for line in judgement.lines] == [
        ("buyer", -1),
        ("bob", 1),
    ]
    assert outcome(book.judge(refund_of(capture, 1, ("cat", 1), paid=legs))) == (
        REJECTED,
        RejectionCode.INVALID_SPLITS,
        "not a leg: cat",
    )
    assert book.judge(refund_of(capture, 1, paid=legs)).legs == (Leg("bob", 1),)
    assert balances(book, "buyer", "bob", "cat") == (300, 0, 0)


def test_an_exchange_writes_four_lines_through_the_exchange_account() -> None:
    book = open_book([wallet("ann", 1_000), wallet("bob")], assets=(EUR, GOLD))
    exchange = Proposal(
        next(ids),
        TENANT,
        TransactionType.EXCHANGE,
        EUR,
        300,
        "ann",
        to_user_id="bob",
        to_asset_code=GOLD,
        to_amount=7,
    )

    judgement = book.judge(exchange)
    assert [
        (line.account.asset_code, line.account.owner, line.amount) for line in judgement.lines
    ] == [
        (EUR, "ann", -300),
        (EUR, EXCHANGE, 300),
        (GOLD, EXCHANGE, -7),
        (GOLD, "bob", 7),
    ]
    assert book.accounts[key("bob", GOLD)].balance == 7


def test_a_journal_entry_is_judged_on_where_all_its_postings_leave_each_wallet() -> None:
    book = open_book([wallet("ann", 100), wallet("bob", 100)])

    # Each posting alone is within ann's funds; together they are not.
    short = journal(("ann", "bob", 80), ("ann", "@fees", 80))
    assert outcome(book.judge(short)) == (REJECTED, RejectionCode.INSUFFICIENT_FUNDS, "wallet ann")
    # The first posting alone is beyond them; what comes back leaves ann at 20.
    net = journal(("ann", "bob", 150), ("bob", "ann", 70))
    judgement = book.judge(net)
    assert judgement.status == APPLIED
    assert [(line.account.owner, line.amount) for line in judgement.lines] == [
        ("bob", 150),
        ("ann", 70),
        ("ann", -150),
        ("bob", -70),
    ]
    assert balances(book, "ann", "bob") == (20, 180)
    # System accounts may go negative.
    assert book.judge(journal(("@fees", "ann", 5))).status == APPLIED
    assert balances(book, "@fees", "ann") == (-5, 25)


def test_a_frozen_payer_is_refused_a_frozen_leg_receives_and_a_closed_leg_is_refused() -> None:
    book = open_book(
        [
            wallet("ann", 100, status=FROZEN),
            wallet("bob", 100, credit_limit=50),
            wallet("cat", status=FROZEN),
            wallet("dan", status=CLOSED),
        ]
    )

    assert book.judge(split("ann", ("cat", 10))).code == RejectionCode.WALLET_FROZEN
    assert book.judge(split("bob", ("cat", 10), ("dan", 10))).code == RejectionCode.WALLET_CLOSED
    assert book.judge(split("bob", ("cat", 100), ("@fees", 51))).code == (
        RejectionCode.INSUFFICIENT_FUNDS
    )
    assert book.judge(split("bob", ("cat", 100), ("@fees", 50))).status == APPLIED
    assert balances(book, "bob", "cat", "@fees") == (-50, 100, 50)
    assert book.judge(journal(("bob", "ann", 1))).code == RejectionCode.INSUFFICIENT_FUNDS
