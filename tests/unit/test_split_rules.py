"""Split spends, payouts, exchanges and journal entries in memory: properties over random
books that mix them with holds, captures, refunds and plain top-ups and spends.

No database and no broker. Random books of one or two tenants and two assets see split
spends and transfers, payouts, exchanges, journal entries, split holds and their captures,
and refunds of all of these (pro rata or leg by leg), mixed with plain top-ups and spends,
judged by one `Book` the way the posting engine judges a claimed batch. Refunds in detail,
`allocate_pro_rata`, who may pay and receive, and worked examples are in test_split_legs.py.

Proposals are built as intake and the engine build them: a capture copies its hold's
wallet, destination and legs; a refund carries its original's legs (`original_legs`) and,
for a capture that paid a wallet, that wallet; legs name distinct owners and sum to the
amount; a refund's own legs sum to its amount.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ledger.codes import RejectionCode
from ledger.legs import Leg, Posting, allocate_pro_rata
from ledger.money import MAX_AMOUNT
from ledger.rules import AccountKey, AccountState, Book, HoldState, Judgement, Original, Proposal
from ledger.vocabulary import AccountStatus, SystemAccount, TransactionStatus
from tests.unit.test_posting_rules import (
    ASSETS,
    PROPERTY_SETTINGS,
    TENANTS,
    USERS,
    copy_accounts,
    sums_by_tenant_and_asset,
)

APPLIED = TransactionStatus.APPLIED
REJECTED = TransactionStatus.REJECTED
QUEUED = TransactionStatus.QUEUED
ACTIVE, FROZEN, CLOSED = AccountStatus.ACTIVE, AccountStatus.FROZEN, AccountStatus.CLOSED

REVENUE, PAYOUTS = SystemAccount.REVENUE.value, SystemAccount.PAYOUTS.value
TOPUP_ACCOUNT, EXCHANGE = SystemAccount.TOPUP.value, SystemAccount.EXCHANGE.value
TENANT_SYSTEMS = ("@fees", "@tax")  # defined by each tenant, beside the built-ins
SYSTEMS = (*(system.value for system in SystemAccount), *TENANT_SYSTEMS)
LEG_OWNERS = (*USERS, REVENUE, *TENANT_SYSTEMS)
JOURNAL_OWNERS = (*USERS, *SYSTEMS)
CLOCK = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXPIRES_AT = CLOCK + timedelta(days=1)  # nothing expires here: docs/holds.md has its own file


# --- scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    accounts: dict[AccountKey, AccountState]
    proposals: list[Proposal]

    def by_id(self) -> dict[uuid.UUID, Proposal]:
        return {proposal.id: proposal for proposal in self.proposals}

    def open_book(self) -> Book:
        """One book for the whole sequence: every transaction a refund, capture or void
        names, as recorded (queued) when the batch was claimed."""
        by_id = self.by_id()
        named = {p.original_transaction_id for p in self.proposals}
        return Book(
            copy_accounts(self.accounts),
            originals={i: recorded(by_id[i]) for i in named if i in by_id},
            now=CLOCK,
        )


def copy_holds(holds: dict[uuid.UUID, HoldState]) -> dict[uuid.UUID, HoldState]:
    return {hold_id: replace(hold) for hold_id, hold in holds.items()}


def recorded(proposal: Proposal, status: TransactionStatus = QUEUED) -> Original:
    """The transaction's row as a later refund, capture or void finds it."""
    return Original(
        proposal.id,
        proposal.tenant_id,
        proposal.type,
        status,
        proposal.user_id,
        proposal.asset_code,
        proposal.amount,
        proposal.to_user_id,
        proposal.to_account,
        proposal.splits,
    )


def wallet_state(
    account_id: int,
    owner: str,
    asset: str,
    *,
    status: str = ACTIVE,
    credit_limit: int = 0,
    balance: int = 0,
    pending: int = 0,
) -> AccountState:
    return AccountState(
        account_id, owner, False, status, credit_limit, balance, pending, 0, asset_code=asset
    )


def system_state(account_id: int, owner: str, asset: str, balance: int = 0) -> AccountState:
    return AccountState(account_id, owner, True, ACTIVE, 0, balance, 0, 0, asset_code=asset)


WALLET_EXISTS = st.sampled_from([True] * 5 + [False])
WALLET_STATUSES = st.sampled_from([ACTIVE] * 6 + [FROZEN, CLOSED])
CREDIT_LIMITS = st.sampled_from([0, 0, 100, 1_000, MAX_AMOUNT])
BALANCES = st.sampled_from([0, 300, 1_000, 5_000, 100_000])
PENDING = st.sampled_from([0, 0, 0, 200])
AMOUNT_SIZES = st.integers(0, 19)
SMALL_AMOUNTS = st.integers(1, 2_000)
HUGE_AMOUNTS = st.integers(MAX_AMOUNT - 1_000, MAX_AMOUNT)
KINDS = st.sampled_from(
    ["topup"] * 3
    + ["spend", "payout", "exchange", "exchange", "journal", "journal"]
    + ["split spend"] * 3
    + ["split transfer"] * 2
    + ["hold"] * 2
    + ["capture"] * 2
    + ["void"]
    + ["refund"] * 4
)
LEG_COUNTS = st.integers(1, 5)
POSTING_COUNTS = st.integers(1, 4)
HOLD_KINDS = st.sampled_from(["split", "split", "payouts", "wallet", "revenue"])
CAPTURE_SHARES = st.sampled_from(["all", "all", "exact", "one", "part", "part", "over"])
REFUND_SHARES = st.sampled_from(["all", "half", "one", "over", "any"])
UNKNOWN_IDS = st.builds(uuid.UUID, int=st.integers(50_000, 60_000))


def draw_amount(draw: st.DrawFn) -> int:
    """Mostly small; now and then near MAX_AMOUNT, where balance limits bite."""
    return draw(HUGE_AMOUNTS if draw(AMOUNT_SIZES) == 0 else SMALL_AMOUNTS)


def draw_parts(draw: st.DrawFn, amount: int, count: int) -> list[int]:
    """`count` positive amounts summing to `amount` (fewer when `amount` is smaller)."""
    count = min(count, amount)
    cut_at = st.integers(1, amount - 1) if amount > 1 else st.nothing()
    cuts = sorted(draw(st.lists(cut_at, min_size=count - 1, max_size=count - 1, unique=True)))
    bounds = [0, *cuts, amount]
    return [high - low for low, high in itertools.pairwise(bounds)]


def draw_legs(draw: st.DrawFn, amount: int, payer: str) -> tuple[Leg, ...]:
    """Legs to distinct owners, now and then the payer itself (same_wallet)."""
    pool = [owner for owner in LEG_OWNERS if owner != payer]
    parts = draw_parts(draw, amount, draw(LEG_COUNTS))
    owners = draw(
        st.lists(st.sampled_from(pool), min_size=len(parts), max_size=len(parts), unique=True)
    )
    if draw(st.integers(0, 19)) == 0:
        owners[-1] = payer
    return tuple(Leg(owner, part) for owner, part in zip(owners, parts, strict=True))


def legs_of(original: Proposal) -> tuple[Leg, ...]:
    """What the engine sets as a refund's `original_legs` (`_with_original_legs`)."""
    owner = original.to_user_id or original.to_account or REVENUE
    return original.splits or (Leg(owner, original.amount or 0),)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    tenants = TENANTS[: draw(st.sampled_from([1, 2, 2]))]
    some_tenant, some_asset, some_user = (
        st.sampled_from(tenants),
        st.sampled_from(ASSETS),
        st.sampled_from(USERS),
    )
    account_ids = itertools.count(1)
    accounts: dict[AccountKey, AccountState] = {}
    for tenant, asset in itertools.product(tenants, ASSETS):
        in_wallets = 0
        for user in USERS:
            if draw(WALLET_EXISTS):
                credit_limit = draw(CREDIT_LIMITS)
                state = wallet_state(
                    next(account_ids),
                    user,
                    asset,
                    status=draw(WALLET_STATUSES),
                    credit_limit=credit_limit,
                    balance=draw(BALANCES) - draw(st.integers(0, min(credit_limit, 1_000))),
                    pending=draw(PENDING),
                )
                accounts[(tenant, asset, user)] = state
                in_wallets += state.balance
        for system in SYSTEMS:
            # What the wallets start with entered through @topup: the ledger sums to zero.
            balance = -in_wallets if system == TOPUP_ACCOUNT else 0
            accounts[(tenant, asset, system)] = system_state(
                next(account_ids), system, asset, balance
            )

    proposals: list[Proposal] = []
    for n in range(draw(st.integers(0, 40))):
        pid = uuid.UUID(int=10_000 + n)
        kind = draw(KINDS)
        tenant, asset, user = draw(some_tenant), draw(some_asset), draw(some_user)
        amount = draw_amount(draw)
        base = Proposal(pid, tenant, kind, asset, amount, user, seq=n)
        if kind == "split spend" or kind == "split transfer":
            proposal = replace(base, type=kind.split()[1], splits=draw_legs(draw, amount, user))
        elif kind == "exchange":
            buyer = draw(st.sampled_from([None, None, *USERS]))
            to_asset = draw(st.sampled_from([a for a in ASSETS if a != asset]))
            proposal = replace(
                base, to_user_id=buyer, to_asset_code=to_asset, to_amount=draw_amount(draw)
            )
        elif kind == "journal":
            proposal = replace(
                base, asset_code=None, amount=None, user_id=None, postings=draw_postings(draw)
            )
        elif kind == "hold":
            proposal = draw_hold(draw, base)
        elif kind in ("capture", "void"):
            proposal = draw_hold_action(draw, base, proposals)
        elif kind == "refund":
            proposal = draw_refund(draw, base, proposals)
        else:
            proposal = base
        proposals.append(proposal)

    # Intake creates the wallet a top-up credits, active and without credit.
    for proposal in proposals:
        assert proposal.asset_code is not None or proposal.type == "journal"
        key = (proposal.tenant_id, str(proposal.asset_code), str(proposal.user_id))
        if proposal.type == "topup" and key not in accounts:
            accounts[key] = wallet_state(next(account_ids), key[2], key[1])
    return Scenario(accounts, proposals)


def draw_postings(draw: st.DrawFn) -> tuple[Posting, ...]:
    postings = []
    for _ in range(draw(POSTING_COUNTS)):
        source, target = draw(
            st.lists(st.sampled_from(JOURNAL_OWNERS), min_size=2, max_size=2, unique=True)
        )
        postings.append(Posting(source, target, draw(st.sampled_from(ASSETS)), draw_amount(draw)))
    return tuple(postings)


def draw_hold(draw: st.DrawFn, base: Proposal) -> Proposal:
    hold = replace(base, expires_at=EXPIRES_AT)
    kind = draw(HOLD_KINDS)
    assert hold.amount is not None and hold.user_id is not None
    if kind == "split":
        return replace(hold, splits=draw_legs(draw, hold.amount, hold.user_id))
    if kind == "payouts":
        return replace(hold, to_account=PAYOUTS)
    if kind == "wallet":
        return replace(hold, to_user_id=draw(st.sampled_from(USERS)))
    return hold


def draw_hold_action(draw: st.DrawFn, base: Proposal, earlier: list[Proposal]) -> Proposal:
    """A capture or void of an earlier hold, as intake copies it; or of an unknown id."""
    holds = [p for p in earlier if p.type == "hold"]
    if not holds or draw(st.integers(0, 9)) == 0:
        return replace(base, original_transaction_id=draw(UNKNOWN_IDS), amount=None)
    hold = draw(st.sampled_from(holds))
    assert hold.amount is not None
    action = replace(
        base,
        tenant_id=hold.tenant_id,
        asset_code=hold.asset_code,
        user_id=hold.user_id,
        amount=None,
        original_transaction_id=hold.id,
    )
    if base.type == "void":
        return action
    share = draw(CAPTURE_SHARES)
    amount = {
        "all": None,
        "exact": hold.amount,
        "one": 1,
        "part": draw(st.integers(1, hold.amount)),
        "over": hold.amount + 1,
    }[share]
    return replace(
        action,
        amount=amount,
        to_user_id=hold.to_user_id,
        to_account=hold.to_account,
        splits=hold.splits,
    )


def paid_by(original: Proposal, earlier: list[Proposal]) -> int:
    """What a spend paid, or a capture would pay if applied (all of its hold by default)."""
    if original.amount is not None:
        return original.amount
    hold = next(p for p in earlier if p.id == original.original_transaction_id)
    assert hold.amount is not None
    return hold.amount


def draw_refund(draw: st.DrawFn, base: Proposal, earlier: list[Proposal]) -> Proposal:
    """A refund of an earlier spend or capture, pro rata or leg by leg, as the engine hands
    it to the book; now and then of an unknown id or from another wallet."""
    holds = {p.id for p in earlier if p.type == "hold"}
    originals = [p for p in earlier if p.type == "spend" or p.original_transaction_id in holds]
    if not originals or draw(st.integers(0, 9)) == 0:
        return replace(base, original_transaction_id=draw(UNKNOWN_IDS))
    original = draw(st.sampled_from(originals))
    paid = paid_by(original, earlier)
    legs = original.splits or (Leg(legs_of(original)[0].owner, paid),)
    refund = replace(
        base,
        tenant_id=original.tenant_id,
        asset_code=original.asset_code,
        user_id=original.user_id if draw(st.integers(0, 9)) else base.user_id,
        original_transaction_id=original.id,
        to_user_id=original.to_user_id,
        to_account=original.to_account,
        original_legs=legs_of(original),
    )
    if draw(st.booleans()):  # leg by leg: some of each of some legs, maybe a stranger's
        asked = [Leg(leg.owner, draw(st.integers(0, leg.amount + 1))) for leg in legs]
        if draw(st.integers(0, 9)) == 0:
            asked.append(Leg(draw(st.sampled_from(LEG_OWNERS)), 1))
        asked = [leg for leg in asked if leg.amount] or [Leg(legs[0].owner, 1)]
        return replace(refund, amount=sum(leg.amount for leg in asked), splits=tuple(asked))
    share = draw(REFUND_SHARES)
    amount = {
        "all": paid,
        "half": max(1, paid // 2),
        "one": 1,
        "over": paid + 1,
        "any": draw(st.integers(1, paid)),
    }[share]
    return replace(refund, amount=amount)


# --- judging a scenario -------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    proposal: Proposal
    judgement: Judgement
    before: dict[AccountKey, AccountState]
    after: dict[AccountKey, AccountState]


def judge_as_one_book(scenario: Scenario) -> tuple[Book, list[Step]]:
    book = scenario.open_book()
    steps = []
    for proposal in scenario.proposals:
        before = copy_accounts(book.accounts)
        judgement = book.judge(proposal)
        steps.append(Step(proposal, judgement, before, copy_accounts(book.accounts)))
    return book, steps


Outcome = tuple[TransactionStatus, RejectionCode | None, str | None, tuple[Leg, ...] | None]


def outcome(judgement: Judgement) -> Outcome:
    return (judgement.status, judgement.code, judgement.detail, judgement.legs)


@dataclass
class Ledger:
    """What the database holds between batches of one: accounts, holds, and the rows of
    decided transactions as a later book loads them."""

    accounts: dict[AccountKey, AccountState]
    holds: dict[uuid.UUID, HoldState]
    rows: dict[uuid.UUID, Original]
    refunded: dict[uuid.UUID, int]
    leg_refunded: dict[tuple[uuid.UUID, str], int]


def judge_one_at_a_time(scenario: Scenario) -> tuple[list[Outcome], Ledger]:
    """Each transaction its own book, opened from the states the ones before it left (as
    the engine opens a batch of one): its accounts, the hold it names, the row it names with
    the status, amount and legs written back, and what refunds took from it so far."""
    ledger = Ledger(copy_accounts(scenario.accounts), {}, {}, {}, {})
    rows = {p.id: recorded(p) for p in scenario.proposals}
    outcomes = []
    for proposal in scenario.proposals:
        keys = [k for k in proposal.account_keys() if k in ledger.accounts]
        book = Book(copy_accounts({k: ledger.accounts[k] for k in keys}), now=CLOCK)
        named = proposal.original_transaction_id
        if named is not None and named in rows:
            book.originals[named] = rows[named]
            if named in ledger.refunded:
                book.refunded[named] = ledger.refunded[named]
            book.leg_refunded = {k: v for k, v in ledger.leg_refunded.items() if k[0] == named}
        if named is not None and named in ledger.holds:
            book.holds = copy_holds({named: ledger.holds[named]})
        judgement = book.judge(proposal)
        ledger.accounts.update(book.accounts)
        ledger.holds.update(book.holds)
        # The engine writes back the status, a capture's amount and the legs it paid.
        settled = judgement.amount if judgement.amount is not None else proposal.amount
        paid = judgement.legs if proposal.type == "capture" else None
        rows[proposal.id] = replace(
            rows[proposal.id],
            status=judgement.status,
            amount=settled,
            splits=paid or proposal.splits,
        )
        if judgement.status == APPLIED and proposal.type == "refund":
            assert named is not None and proposal.amount is not None
            ledger.refunded[named] = ledger.refunded.get(named, 0) + proposal.amount
            for leg in judgement.legs or ():
                leg_key = (named, leg.owner)
                ledger.leg_refunded[leg_key] = ledger.leg_refunded.get(leg_key, 0) + leg.amount
        outcomes.append(outcome(judgement))
    return outcomes, ledger


def line_keys(step: Step) -> list[AccountKey]:
    by_id = {state.id: k for k, state in step.after.items()}
    return [by_id[line.account.id] for line in step.judgement.lines]


def expected_lines(step: Step, holds: dict[uuid.UUID, Proposal]) -> list[tuple[str, str, int]]:
    """(asset, owner, amount) of each line an applied transaction writes, in order, as
    docs/design.md#transaction-types has them."""
    p, judgement = step.proposal, step.judgement
    asset, user, amount = str(p.asset_code), str(p.user_id), p.amount or 0
    if p.type == "journal":
        # Every posting's credit first, then every debit: no line shows a wallet below the
        # floor its final balance respects.
        postings = p.postings or ()
        return [(x.asset_code, x.target, x.amount) for x in postings] + [
            (x.asset_code, x.source, -x.amount) for x in postings
        ]
    if p.type == "exchange":
        bought, to_amount = str(p.to_asset_code), p.to_amount or 0
        return [
            (asset, user, -amount),
            (asset, EXCHANGE, amount),
            (bought, EXCHANGE, -to_amount),
            (bought, p.to_user_id or user, to_amount),
        ]
    if p.type in ("hold", "void"):
        return []
    if p.type == "topup":
        return [(asset, TOPUP_ACCOUNT, -amount), (asset, user, amount)]
    if p.type in ("spend", "payout", "transfer"):
        legs = p.splits or (Leg(REVENUE if p.type == "spend" else PAYOUTS, amount),)
        return [(asset, user, -amount), *((asset, leg.owner, leg.amount) for leg in legs)]
    if p.type == "capture":
        assert p.original_transaction_id is not None
        hold = holds[p.original_transaction_id]
        captured = p.amount if p.amount is not None else hold.amount
        assert captured is not None and judgement.amount == captured
        if hold.splits:
            shares = allocate_pro_rata(captured, [leg.amount for leg in hold.splits])
            paid = [Leg(leg.owner, s) for leg, s in zip(hold.splits, shares, strict=True) if s]
            assert judgement.legs == tuple(paid)
        else:
            paid = [Leg(hold.to_user_id or hold.to_account or REVENUE, captured)]
            assert judgement.legs is None
        return [(asset, user, -captured), *((asset, leg.owner, leg.amount) for leg in paid)]
    assert p.type == "refund" and judgement.legs is not None
    assert sum(leg.amount for leg in judgement.legs) == amount
    return [*((asset, leg.owner, -leg.amount) for leg in judgement.legs), (asset, user, amount)]


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_applied_transaction_balances_per_asset_and_no_tenant_and_asset_total_moves(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    holds = {p.id: p for p in scenario.proposals if p.type == "hold"}
    totals = sums_by_tenant_and_asset(scenario.accounts)

    for step in steps:
        assert sums_by_tenant_and_asset(step.after) == totals
        per_asset: Counter[str] = Counter()
        for line in step.judgement.lines:
            per_asset[line.account.asset_code] += line.amount
        assert set(per_asset.values()) <= {0}
        if step.judgement.status != APPLIED:
            continue
        keys = line_keys(step)
        assert [
            (k[1], k[2], line.amount) for k, line in zip(keys, step.judgement.lines, strict=True)
        ] == (expected_lines(step, holds))
        assert {k[0] for k in keys} <= {step.proposal.tenant_id}
        moved: Counter[AccountKey] = Counter()
        for k, line in zip(keys, step.judgement.lines, strict=True):
            moved[k] += line.amount
        for k, after in step.after.items():
            assert after.balance == step.before[k].balance + moved[k]
    assert sums_by_tenant_and_asset(book.accounts) == totals


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_leg_gives_back_more_than_the_spend_or_capture_paid_it(scenario: Scenario) -> None:
    _, steps = judge_as_one_book(scenario)
    paid: Counter[tuple[uuid.UUID, str]] = Counter()
    given_back: Counter[tuple[uuid.UUID, str]] = Counter()

    for step in steps:
        proposal, judgement = step.proposal, step.judgement
        if judgement.status != APPLIED:
            continue
        if proposal.type in ("spend", "capture"):
            for line in judgement.lines:
                if line.amount > 0:
                    paid[(proposal.id, line.account.owner)] += line.amount
        if proposal.type == "refund":
            assert proposal.original_transaction_id is not None and judgement.legs is not None
            for leg in judgement.legs:
                taken = (proposal.original_transaction_id, leg.owner)
                given_back[taken] += leg.amount
                assert 0 < given_back[taken] <= paid[taken], leg.owner


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_rejection_changes_nothing_and_judging_it_again_gives_the_same_answer(
    scenario: Scenario,
) -> None:
    book = scenario.open_book()
    for proposal in scenario.proposals:
        before = (
            copy_accounts(book.accounts),
            copy_holds(book.holds),
            dict(book.refunded),
            dict(book.leg_refunded),
            dict(book.settled_legs),
        )
        judgement = book.judge(proposal)
        if judgement.status == APPLIED:
            assert judgement.code is None and judgement.detail is None
            continue

        assert judgement.status == REJECTED
        assert isinstance(judgement.code, RejectionCode)
        assert (judgement.lines, judgement.hold, judgement.amount, judgement.legs) == (
            (),
            None,
            None,
            None,
        )
        after = (
            book.accounts,
            book.holds,
            book.refunded,
            book.leg_refunded,
            book.settled_legs,
        )
        assert after == before
        assert book.judge(proposal) == judgement
        assert book.accounts == before[0]


@PROPERTY_SETTINGS
@given(scenarios())
def test_one_book_for_the_sequence_decides_as_a_fresh_book_per_transaction(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    outcomes, ledger = judge_one_at_a_time(scenario)

    assert [outcome(step.judgement) for step in steps] == outcomes
    assert book.accounts == ledger.accounts
    assert book.holds == ledger.holds
    assert book.refunded == ledger.refunded
    assert book.leg_refunded == ledger.leg_refunded
