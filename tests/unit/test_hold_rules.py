"""Holds, captures and voids in memory: properties over random books, and an example per
rejection code of the hold family.

No database and no broker. A few wallets of one tenant and one asset see random sequences
of topups, spends, transfers, refunds (of spends and of captures), holds, captures and
voids, judged by one `Book` the way the posting engine judges a claimed batch. Between
transactions the clock moves (so holds come due), an operator freezes or unfreezes a
wallet, and the sweeper expires due holds (`ledger.holds.expire_due_holds`, written out
again here). The properties are the invariants of docs/design.md#invariants (6 included:
a wallet's `pending` is the sum of its held holds) and the hold rules of docs/holds.md#rules.

Proposals are built as intake builds them: a capture or void copies the wallet and asset
of the hold it names (a capture its destination too), or carries no wallet when it names
no hold; a refund of a capture that paid a wallet carries that wallet as `to_user_id`; and
every wallet a request credits (topup, transfer target, hold destination) exists before
anything is judged.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.codes import RejectionCode
from ledger.rules import (
    AccountKey,
    AccountState,
    Book,
    HoldState,
    Judgement,
    Original,
    Proposal,
    available_balance,
)
from ledger.vocabulary import (
    AccountStatus,
    HoldStatus,
    SystemAccount,
    TransactionStatus,
    TransactionType,
)

APPLIED = TransactionStatus.APPLIED
REJECTED = TransactionStatus.REJECTED
QUEUED = TransactionStatus.QUEUED

TENANT = uuid.UUID(int=1)
ASSET = "EUR"
USERS = ("ann", "bob", "cat", "dan")
REVENUE = SystemAccount.REVENUE.value
CLOCK = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# No example database (several engineers share this checkout), no deadline (so do the
# cores): a slow example is not a failing one.
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- events: transactions, and what happens between them ----------------------------------


@dataclass(frozen=True)
class Tick:
    """The clock moves on: the next transactions are judged this much later."""

    seconds: int


@dataclass(frozen=True)
class SetStatus:
    """An operator freezes or unfreezes a wallet (`POST /wallets/{user_id}/freeze`)."""

    owner: str
    status: AccountStatus


@dataclass(frozen=True)
class Sweep:
    """The relay expires every hold still held at or past its `expires_at`."""


Event = Proposal | Tick | SetStatus | Sweep


@dataclass(frozen=True)
class Scenario:
    """The accounts as intake left them, and the events in order."""

    accounts: dict[AccountKey, AccountState]
    events: list[Event]

    @property
    def proposals(self) -> list[Proposal]:
        return [event for event in self.events if isinstance(event, Proposal)]

    def by_id(self) -> dict[uuid.UUID, Proposal]:
        return {proposal.id: proposal for proposal in self.proposals}


def key(owner: str) -> AccountKey:
    return (TENANT, ASSET, owner)


def copy_accounts(accounts: dict[AccountKey, AccountState]) -> dict[AccountKey, AccountState]:
    return {k: replace(state) for k, state in accounts.items()}


def copy_holds(holds: dict[uuid.UUID, HoldState]) -> dict[uuid.UUID, HoldState]:
    return {k: replace(hold) for k, hold in holds.items()}


# Strategies are built once: building one per draw costs more than the draw.
USER_COUNTS = st.sampled_from([2, 3, 3, 4])
WALLET_EXISTS = st.sampled_from([True, True, True, False])
WALLET_STATUSES = st.sampled_from([AccountStatus.ACTIVE] * 7 + [AccountStatus.FROZEN])
CREDIT_LIMITS = st.sampled_from([0, 0, 100, 1_000])
BALANCES = st.sampled_from([0, 300, 1_000, 2_000])
AMOUNTS = st.one_of(st.integers(1, 300), st.sampled_from([1, 300, 1_000]))
EVENT_COUNTS = st.integers(0, 60)
KINDS = st.sampled_from(
    ["topup"] * 3
    + ["spend"] * 2
    + ["transfer", "refund", "refund"]
    + ["hold"] * 4
    + ["capture"] * 4
    + ["void"] * 2
    + ["tick", "tick", "to expiry"]
    + ["status", "status", "sweep"]
)
EXPIRES_IN = st.sampled_from([1, 10, 60, 300, 3_600, 3_600])
TICKS = st.sampled_from([1, 10, 30, 60, 300])
STATUS_CHANGES = st.sampled_from([AccountStatus.FROZEN, AccountStatus.ACTIVE])
HOLD_DESTINATIONS = st.sampled_from(["revenue", "revenue", "wallet"])
# What a capture or void names: mostly an earlier hold (applied or rejected), else an id
# nobody knows or an earlier transaction that is no hold (intake copies no wallet then).
NAMED = st.sampled_from(["hold"] * 8 + ["unknown", "not a hold"])
REFUND_NAMED = st.sampled_from(["capture"] * 3 + ["spend"] * 2 + ["unknown"])
REFUND_WALLETS = st.sampled_from(["its own"] * 4 + ["another"])
# What share of the hold a capture asks for (None: the default, all of it).
CAPTURE_SHARES = st.sampled_from(
    [
        None,
        None,
        lambda amount: amount,
        lambda amount: max(1, amount // 2),
        lambda amount: amount + 1,
        "any",
    ]
)
REFUND_SHARES = st.sampled_from(
    [lambda amount: amount, lambda amount: max(1, amount // 3), lambda amount: amount + 1, "any"]
)
UNKNOWN_IDS = st.builds(uuid.UUID, int=st.integers(50_000, 60_000))


def captured_amount_asked(capture: Proposal, holds: dict[uuid.UUID, Proposal]) -> int | None:
    """What a capture would move: its amount, or all of the hold it names."""
    if capture.amount is not None:
        return capture.amount
    hold = holds.get(capture.original_transaction_id) if capture.original_transaction_id else None
    return hold.amount if hold is not None else None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    users = USERS[: draw(USER_COUNTS)]
    some_user = st.sampled_from(users)
    ids = itertools.count(1)

    accounts: dict[AccountKey, AccountState] = {}
    in_wallets = 0
    for user in users:
        if draw(WALLET_EXISTS):
            credit_limit = draw(CREDIT_LIMITS)
            balance = draw(BALANCES) - draw(st.integers(0, credit_limit))
            accounts[key(user)] = AccountState(
                next(ids), user, False, draw(WALLET_STATUSES), credit_limit, balance, 0, 0
            )
            in_wallets += balance
    for system in SystemAccount:
        # What the wallets start with entered through @topup: the ledger sums to zero.
        balance = -in_wallets if system == SystemAccount.TOPUP else 0
        accounts[key(system.value)] = AccountState(
            next(ids), system.value, True, AccountStatus.ACTIVE, 0, balance, 0, 0
        )

    events: list[Event] = []
    proposals: list[Proposal] = []
    holds: dict[uuid.UUID, Proposal] = {}
    elapsed = 0  # the clock as the events so far moved it
    for n in range(draw(EVENT_COUNTS)):
        kind = draw(KINDS)
        if kind in ("tick", "to expiry"):
            # "to expiry": exactly to an earlier hold's expires_at, the first instant it is due.
            due = [
                int((p.expires_at - CLOCK).total_seconds()) - elapsed
                for p in holds.values()
                if p.expires_at is not None
            ]
            due = [seconds for seconds in due if seconds > 0]
            seconds = draw(st.sampled_from(due)) if kind == "to expiry" and due else draw(TICKS)
            elapsed += seconds
            events.append(Tick(seconds))
            continue
        if kind == "status":
            # Often the wallet of an earlier hold: a capture from it may then meet a freeze.
            held = [p.user_id for p in holds.values() if p.user_id is not None]
            if held and draw(st.booleans()):
                events.append(SetStatus(draw(st.sampled_from(held)), AccountStatus.FROZEN))
            else:
                events.append(SetStatus(draw(some_user), draw(STATUS_CHANGES)))
            continue
        if kind == "sweep":
            events.append(Sweep())
            continue
        pid = uuid.UUID(int=10_000 + n)
        amount: int | None = draw(AMOUNTS)
        user_id: str | None = draw(some_user)
        asset_code: str | None = ASSET
        to_user_id = original_id = expires_at = None
        others = [user for user in users if user != user_id]
        if kind == "transfer":
            to_user_id = draw(st.sampled_from(others))
        elif kind == "hold":
            if draw(HOLD_DESTINATIONS) == "wallet":
                to_user_id = draw(st.sampled_from(others))
            expires_at = CLOCK + timedelta(seconds=elapsed + draw(EXPIRES_IN))
        elif kind in ("capture", "void"):
            named = draw(NAMED)
            hold = None
            if named == "hold" and holds:
                hold = draw(st.sampled_from(list(holds.values())))
                original_id = hold.id
            elif named == "not a hold" and (
                not_holds := [p for p in proposals if p.id not in holds]
            ):
                original_id = draw(st.sampled_from(not_holds)).id
            else:
                original_id = draw(UNKNOWN_IDS)
            # Intake: the hold's wallet and asset (a capture its destination), or nothing.
            user_id = hold.user_id if hold else None
            asset_code = hold.asset_code if hold else None
            to_user_id = hold.to_user_id if hold and kind == "capture" else None
            amount = None
            share = draw(CAPTURE_SHARES) if kind == "capture" else None
            if share == "any":
                amount = draw(AMOUNTS)
            elif share is not None:
                amount = share(hold.amount if hold and hold.amount else draw(AMOUNTS))
        elif kind == "refund":
            named = draw(REFUND_NAMED)
            candidates = [p for p in proposals if p.type == named]
            if candidates:
                original = draw(st.sampled_from(candidates))
                original_id = original.id
                if original.user_id is not None and draw(REFUND_WALLETS) == "its own":
                    user_id = original.user_id
                # Intake: a refund of a capture takes the wallet the capture paid.
                if original.type == "capture":
                    to_user_id = original.to_user_id
                share = draw(REFUND_SHARES)
                base = (
                    captured_amount_asked(original, holds)
                    if original.type == "capture"
                    else original.amount
                )
                if share != "any" and base is not None:
                    amount = share(base)
            else:
                original_id = draw(UNKNOWN_IDS)
        proposal = Proposal(
            pid,
            TENANT,
            kind,
            asset_code,
            amount,
            user_id,
            to_user_id,
            original_id,
            expires_at,
            seq=n,
        )
        proposals.append(proposal)
        events.append(proposal)
        if kind == "hold":
            holds[pid] = proposal

    # Intake creates every wallet a request credits, active and without credit, before the
    # engine judges anything (`ensure_wallets`).
    for proposal in proposals:
        credited = []
        if proposal.type == "topup":
            credited.append(proposal.user_id)
        if proposal.type in ("transfer", "hold") and proposal.to_user_id:
            credited.append(proposal.to_user_id)
        for owner in credited:
            assert owner is not None
            if key(owner) not in accounts:
                accounts[key(owner)] = AccountState(
                    next(ids), owner, False, AccountStatus.ACTIVE, 0, 0, 0, 0
                )
    return Scenario(accounts, events)


# --- what happens between transactions ----------------------------------------------------


def set_status(accounts: dict[AccountKey, AccountState], event: SetStatus) -> None:
    wallet = accounts.get(key(event.owner))
    if wallet is not None:
        wallet.status = event.status
        wallet.version += 1


def sweep(
    accounts: dict[AccountKey, AccountState], holds: dict[uuid.UUID, HoldState], now: datetime
) -> None:
    """`expire_due_holds`: each held hold at or past its expiry is expired, its wallet's
    pending released."""
    by_id = {state.id: state for state in accounts.values()}
    for hold in holds.values():
        if hold.status == HoldStatus.HELD and hold.expires_at <= now:
            hold.status = HoldStatus.EXPIRED
            hold.released_at = now
            wallet = by_id[hold.account_id]
            wallet.pending -= hold.amount
            wallet.version += 1


# --- judging a scenario -------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One event, its judgement (for a transaction), and the book just before and after."""

    event: Event
    judgement: Judgement | None
    now: datetime
    before: dict[AccountKey, AccountState]
    after: dict[AccountKey, AccountState]
    holds_before: dict[uuid.UUID, HoldState]
    holds_after: dict[uuid.UUID, HoldState]


def judge_as_one_book(scenario: Scenario) -> tuple[Book, list[Step]]:
    """One book for the whole sequence, loaded the way `_open_book` loads a batch: every
    transaction a refund, capture or void names, as queued."""
    proposals = scenario.by_id()
    named = {p.original_transaction_id for p in scenario.proposals if p.original_transaction_id}
    book = Book(
        copy_accounts(scenario.accounts),
        originals={
            i: original_of(proposals[i], QUEUED, proposals[i].amount)
            for i in named
            if i in proposals
        },
        now=CLOCK,
    )
    steps: list[Step] = []
    for event in scenario.events:
        before, holds_before = copy_accounts(book.accounts), copy_holds(book.holds)
        judgement = None
        assert book.now is not None
        if isinstance(event, Proposal):
            judgement = book.judge(event)
        elif isinstance(event, Tick):
            book.now += timedelta(seconds=event.seconds)
        elif isinstance(event, SetStatus):
            set_status(book.accounts, event)
        else:
            sweep(book.accounts, book.holds, book.now)
        steps.append(
            Step(
                event,
                judgement,
                book.now,
                before,
                copy_accounts(book.accounts),
                holds_before,
                copy_holds(book.holds),
            )
        )
    return book, steps


def original_of(proposal: Proposal, status: TransactionStatus, amount: int | None) -> Original:
    return Original(
        proposal.id,
        proposal.tenant_id,
        proposal.type,
        status,
        proposal.user_id,
        proposal.asset_code,
        amount,
    )


Outcome = tuple[TransactionStatus, RejectionCode | None]


def judge_one_at_a_time(
    scenario: Scenario,
) -> tuple[list[Outcome], dict[AccountKey, AccountState], dict[uuid.UUID, HoldState]]:
    """Each transaction its own book, loaded from what the ones before it decided: the
    accounts it names, the hold it names, its original with the status and (for a capture)
    the settled amount recorded so far, and the refunds applied so far."""
    proposals = scenario.by_id()
    accounts = copy_accounts(scenario.accounts)
    holds: dict[uuid.UUID, HoldState] = {}
    decided: dict[uuid.UUID, TransactionStatus] = {}
    settled: dict[uuid.UUID, int] = {}
    refunded: dict[uuid.UUID, int] = {}
    now = CLOCK
    outcomes: list[Outcome] = []
    for event in scenario.events:
        if isinstance(event, Tick):
            now += timedelta(seconds=event.seconds)
            continue
        if isinstance(event, SetStatus):
            set_status(accounts, event)
            continue
        if isinstance(event, Sweep):
            sweep(accounts, holds, now)
            continue
        book = Book(
            copy_accounts({k: accounts[k] for k in event.account_keys() if k in accounts}),
            now=now,
        )
        named = event.original_transaction_id
        if named is not None and named in proposals:
            original = proposals[named]
            book.originals[named] = original_of(
                original,
                decided.get(named, QUEUED),
                settled.get(named, original.amount),
            )
            if named in refunded:
                book.refunded[named] = refunded[named]
        if named is not None and named in holds:
            book.holds[named] = replace(holds[named])
        judgement = book.judge(event)
        accounts.update(book.accounts)
        holds.update(book.holds)
        decided[event.id] = judgement.status
        if judgement.amount is not None:
            settled[event.id] = judgement.amount
        if judgement.status == APPLIED and event.type == "refund":
            assert named is not None and event.amount is not None
            refunded[named] = refunded.get(named, 0) + event.amount
        outcomes.append((judgement.status, judgement.code))
    return outcomes, accounts, holds


def account_view(state: AccountState) -> tuple[object, ...]:
    return (state.id, state.status, state.credit_limit, state.balance, state.pending, state.version)


def hold_view(hold: HoldState) -> tuple[object, ...]:
    return (
        hold.account_id,
        hold.destination_account_id,
        hold.amount,
        hold.status,
        hold.expires_at,
        hold.captured_amount,
        hold.captured_by,
        hold.voided_by,
        hold.released_at,
    )


def held_sums(holds: dict[uuid.UUID, HoldState]) -> Counter[int]:
    sums: Counter[int] = Counter()
    for hold in holds.values():
        if hold.status == HoldStatus.HELD:
            sums[hold.account_id] += hold.amount
    return sums


def past_expiry(hold: Proposal, now: datetime) -> bool:
    assert hold.expires_at is not None
    return now >= hold.expires_at


def transaction_steps(steps: list[Step]) -> list[tuple[Step, Proposal, Judgement]]:
    return [
        (step, step.event, step.judgement)
        for step in steps
        if isinstance(step.event, Proposal) and step.judgement is not None
    ]


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios())
def test_money_is_conserved_holds_move_none_and_a_capture_moves_exactly_its_amount(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    holds = {p.id: p for p in scenario.proposals if p.type == "hold"}

    assert sum(state.balance for state in scenario.accounts.values()) == 0
    for step in steps:
        assert sum(state.balance for state in step.after.values()) == 0
        moved = {k: step.after[k].balance - step.before[k].balance for k in step.after}
        proposal, judgement = step.event, step.judgement
        if judgement is None or judgement.status != APPLIED:
            assert set(moved.values()) == {0}  # ticks, freezes, sweeps and rejections
            continue
        assert isinstance(proposal, Proposal)
        assert sum(line.amount for line in judgement.lines) == 0
        if proposal.type in ("hold", "void"):
            assert judgement.lines == ()
            assert set(moved.values()) == {0}
        elif proposal.type == "capture":
            assert proposal.original_transaction_id is not None
            hold = holds[proposal.original_transaction_id]
            amount = captured_amount_asked(proposal, holds)
            assert amount is not None
            assert judgement.amount == amount
            assert hold.user_id is not None
            wallet, destination = key(hold.user_id), key(hold.to_user_id or REVENUE)
            assert {k: v for k, v in moved.items() if v} == {wallet: -amount, destination: amount}
    assert sum(state.balance for state in book.accounts.values()) == 0


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_wallets_pending_is_the_sum_of_its_held_holds_after_every_step(
    scenario: Scenario,
) -> None:
    _, steps = judge_as_one_book(scenario)
    applied_holds: set[uuid.UUID] = set()

    for step in steps:
        if step.judgement is not None and step.judgement.status == APPLIED:
            assert isinstance(step.event, Proposal)
            if step.event.type == "hold":
                applied_holds.add(step.event.id)
        # Every applied hold is a hold of the book, and nothing else is.
        assert set(step.holds_after) == applied_holds
        held = held_sums(step.holds_after)
        for state in step.after.values():
            assert state.pending >= 0
            assert state.pending == held[state.id], state.owner


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_hold_is_settled_at_most_once_and_later_captures_or_voids_change_nothing(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    holds = {p.id: p for p in scenario.proposals if p.type == "hold"}
    # Why a hold is no longer held, from the outcomes (and the sweeps) seen so far.
    settled_by: dict[uuid.UUID, str] = {}

    for step in steps:
        if isinstance(step.event, Sweep):
            for hold_id, hold in step.holds_before.items():
                if hold.status == HoldStatus.HELD and hold.expires_at <= step.now:
                    settled_by[hold_id] = "expiry"
            continue
        if not isinstance(step.event, Proposal) or step.event.type not in ("capture", "void"):
            continue
        proposal, judgement = step.event, step.judgement
        assert judgement is not None
        hold_id = proposal.original_transaction_id
        assert hold_id is not None
        if hold_id in settled_by:
            expected = (
                RejectionCode.HOLD_EXPIRED
                if settled_by[hold_id] == "expiry"
                else RejectionCode.HOLD_NOT_ACTIVE
            )
            assert (judgement.status, judgement.code) == (REJECTED, expected)
        elif hold_id in step.holds_before and past_expiry(holds[hold_id], step.now):
            assert (judgement.status, judgement.code) == (REJECTED, RejectionCode.HOLD_EXPIRED)
        if judgement.status != APPLIED:
            assert step.after == step.before
            assert step.holds_after == step.holds_before
            continue
        assert hold_id not in settled_by
        settled_by[hold_id] = proposal.type
        hold = step.holds_after[hold_id]
        if proposal.type == "capture":
            assert hold.status == HoldStatus.CAPTURED
            assert (hold.captured_by, hold.voided_by) == (proposal.id, None)
            assert hold.captured_amount == captured_amount_asked(proposal, holds)
        else:
            assert hold.status == HoldStatus.VOIDED
            assert (hold.captured_by, hold.voided_by) == (None, proposal.id)
        assert hold.released_at == step.now

    settlements = Counter(
        proposal.original_transaction_id
        for _, proposal, judgement in transaction_steps(steps)
        if proposal.type in ("capture", "void") and judgement.status == APPLIED
    )
    assert all(count == 1 for count in settlements.values())
    for hold_id, hold in book.holds.items():
        assert hold.captured_amount is None or 0 < hold.captured_amount <= hold.amount
        assert (hold.status == HoldStatus.HELD) == (hold_id not in settled_by)


def expected_hold_action(
    step: Step,
    proposal: Proposal,
    holds: dict[uuid.UUID, Proposal],
    applied_holds: set[uuid.UUID],
    settled_by: dict[uuid.UUID, str],
) -> Outcome:
    """How the hold rules (docs/holds.md#rules) decide a capture or void, from the outcomes
    so far: written out again here rather than asked of `ledger.rules`, so a broken rule
    cannot vouch for itself."""
    hold_id = proposal.original_transaction_id
    if hold_id not in applied_holds:  # unknown, not a hold, or a rejected hold
        return (REJECTED, RejectionCode.HOLD_NOT_FOUND)
    assert hold_id is not None
    if settled_by.get(hold_id) in ("capture", "void"):
        return (REJECTED, RejectionCode.HOLD_NOT_ACTIVE)
    hold = holds[hold_id]
    if hold_id in settled_by or past_expiry(hold, step.now):
        return (REJECTED, RejectionCode.HOLD_EXPIRED)
    if proposal.type == "capture":
        asked = captured_amount_asked(proposal, holds)
        assert asked is not None and hold.amount is not None and hold.user_id is not None
        if asked > hold.amount:
            return (REJECTED, RejectionCode.CAPTURE_EXCEEDS_HOLD)
        if step.before[key(hold.user_id)].status == AccountStatus.FROZEN:
            return (REJECTED, RejectionCode.WALLET_FROZEN)
    return (APPLIED, None)


@PROPERTY_SETTINGS
@given(scenarios())
def test_each_capture_and_void_is_applied_or_rejected_exactly_as_the_hold_rules_say(
    scenario: Scenario,
) -> None:
    _, steps = judge_as_one_book(scenario)
    holds = {p.id: p for p in scenario.proposals if p.type == "hold"}
    applied_holds: set[uuid.UUID] = set()
    settled_by: dict[uuid.UUID, str] = {}

    for step in steps:
        if isinstance(step.event, Sweep):
            for hold_id in applied_holds - set(settled_by):
                if past_expiry(holds[hold_id], step.now):
                    settled_by[hold_id] = "expiry"
        if not isinstance(step.event, Proposal) or step.judgement is None:
            continue
        proposal, judgement = step.event, step.judgement
        if proposal.type in ("capture", "void"):
            expected = expected_hold_action(step, proposal, holds, applied_holds, settled_by)
            assert (judgement.status, judgement.code) == expected
        if judgement.status == APPLIED and proposal.type == "hold":
            applied_holds.add(proposal.id)
        if judgement.status == APPLIED and proposal.original_transaction_id in holds:
            settled_by[proposal.original_transaction_id] = proposal.type


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_rejected_transaction_changes_no_account_and_no_hold(scenario: Scenario) -> None:
    _, steps = judge_as_one_book(scenario)

    for step, _, judgement in transaction_steps(steps):
        if judgement.status == APPLIED:
            assert judgement.code is None
            continue
        assert judgement.status == REJECTED
        assert isinstance(judgement.code, RejectionCode)
        assert (judgement.lines, judgement.hold, judgement.amount) == ((), None, None)
        assert step.after == step.before
        assert step.holds_after == step.holds_before


@PROPERTY_SETTINGS
@given(scenarios())
def test_holds_respect_available_funds_credit_limits_and_frozen_wallets(
    scenario: Scenario,
) -> None:
    _, steps = judge_as_one_book(scenario)

    for step in steps:
        for k, after in step.after.items():
            if after.is_system:
                continue
            before = step.before[k]
            assert after.balance >= -after.credit_limit, after.owner
            # Every wallet starts with nothing held and a balance within its credit.
            assert after.available() >= 0, after.owner
            if before.status == AccountStatus.FROZEN:
                assert after.balance >= before.balance, "a frozen wallet was debited"
                assert after.pending <= before.pending, "a frozen wallet took a hold"
        if step.judgement is None or step.judgement.status != APPLIED:
            continue
        proposal = step.event
        assert isinstance(proposal, Proposal) and proposal.user_id is not None
        wallet_before = step.before[key(proposal.user_id)]
        if proposal.type in ("hold", "capture"):
            assert wallet_before.status == AccountStatus.ACTIVE
        if proposal.type == "hold":
            assert proposal.amount is not None
            before = available_balance(
                wallet_before.balance, wallet_before.pending, wallet_before.credit_limit
            )
            assert before >= 0
            assert step.after[key(proposal.user_id)].available() == before - proposal.amount >= 0


@PROPERTY_SETTINGS
@given(scenarios())
def test_one_book_for_the_sequence_decides_as_a_fresh_book_per_transaction(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    outcomes, accounts, holds = judge_one_at_a_time(scenario)

    assert outcomes == [(j.status, j.code) for _, _, j in transaction_steps(steps)]
    assert {k: account_view(s) for k, s in accounts.items()} == {
        k: account_view(s) for k, s in book.accounts.items()
    }
    assert {i: hold_view(h) for i, h in holds.items()} == {
        i: hold_view(h) for i, h in book.holds.items()
    }


# --- examples: one per rejection of the hold family ---------------------------------------


HOLD_ID = uuid.UUID(int=1)


def example_book(*, ann_status: AccountStatus = AccountStatus.ACTIVE) -> Book:
    """ann holds 1,000 without credit; bob has an empty wallet; the four system accounts."""
    accounts = {
        key("ann"): AccountState(1, "ann", False, ann_status, 0, 1_000, 0, 0),
        key("bob"): AccountState(2, "bob", False, AccountStatus.ACTIVE, 0, 0, 0, 0),
    }
    for n, system in enumerate(SystemAccount, start=3):
        balance = -1_000 if system == SystemAccount.TOPUP else 0
        accounts[key(system.value)] = AccountState(
            n, system.value, True, AccountStatus.ACTIVE, 0, balance, 0, 0
        )
    return Book(accounts, now=CLOCK)


def hold(amount: int = 400, *, to_user_id: str | None = None, expires_in: int = 60) -> Proposal:
    return Proposal(
        HOLD_ID,
        TENANT,
        TransactionType.HOLD,
        ASSET,
        amount,
        "ann",
        to_user_id,
        expires_at=CLOCK + timedelta(seconds=expires_in),
    )


def capture(amount: int | None = None, *, of: Proposal | None = None, n: int = 2) -> Proposal:
    """A capture as intake makes it: with the named hold's wallet, or none."""
    return Proposal(
        uuid.UUID(int=n),
        TENANT,
        TransactionType.CAPTURE,
        of.asset_code if of else None,
        amount,
        of.user_id if of else None,
        of.to_user_id if of else None,
        original_transaction_id=of.id if of else uuid.UUID(int=404),
    )


def void(*, of: Proposal | None = None, n: int = 3) -> Proposal:
    return Proposal(
        uuid.UUID(int=n),
        TENANT,
        TransactionType.VOID,
        of.asset_code if of else None,
        None,
        of.user_id if of else None,
        original_transaction_id=of.id if of else uuid.UUID(int=404),
    )


def outcome(judgement: Judgement) -> Outcome:
    return (judgement.status, judgement.code)


def test_a_hold_reserves_funds_without_moving_money_and_a_partial_capture_releases_the_rest() -> (
    None
):
    book, made = example_book(), hold(400, to_user_id="bob")
    assert outcome(book.judge(made)) == (APPLIED, None)
    ann, bob = book.accounts[key("ann")], book.accounts[key("bob")]
    assert (ann.balance, ann.pending, ann.available()) == (1_000, 400, 600)

    assert outcome(book.judge(capture(150, of=made))) == (APPLIED, None)
    assert (ann.balance, ann.pending, bob.balance) == (850, 0, 150)
    assert book.holds[HOLD_ID].captured_amount == 150


def test_a_hold_beyond_available_funds_is_insufficient_funds() -> None:
    book = example_book()
    assert outcome(book.judge(hold(600))) == (APPLIED, None)
    second = replace(hold(500), id=uuid.UUID(int=7))
    assert outcome(book.judge(second)) == (REJECTED, RejectionCode.INSUFFICIENT_FUNDS)


def test_a_capture_or_void_naming_no_applied_hold_is_hold_not_found() -> None:
    book = example_book()
    assert outcome(book.judge(capture())) == (REJECTED, RejectionCode.HOLD_NOT_FOUND)
    assert outcome(book.judge(void())) == (REJECTED, RejectionCode.HOLD_NOT_FOUND)

    # A hold that was rejected is no hold either.
    rejected = hold(5_000)
    book.originals[HOLD_ID] = original_of(rejected, QUEUED, rejected.amount)
    assert outcome(book.judge(rejected)) == (REJECTED, RejectionCode.INSUFFICIENT_FUNDS)
    assert outcome(book.judge(capture(of=rejected))) == (REJECTED, RejectionCode.HOLD_NOT_FOUND)

    # Nor is a spend.
    spend = Proposal(uuid.UUID(int=8), TENANT, TransactionType.SPEND, ASSET, 10, "ann")
    book.originals[spend.id] = original_of(spend, APPLIED, 10)
    not_a_hold = replace(void(), original_transaction_id=spend.id)
    assert outcome(book.judge(not_a_hold)) == (REJECTED, RejectionCode.HOLD_NOT_FOUND)


def test_a_second_capture_or_void_and_one_of_a_queued_hold_are_hold_not_active() -> None:
    book, made = example_book(), hold()
    # Accepted before the capture, but not judged yet.
    book.originals[HOLD_ID] = original_of(made, QUEUED, made.amount)
    assert outcome(book.judge(capture(of=made, n=9))) == (REJECTED, RejectionCode.HOLD_NOT_ACTIVE)

    book.judge(made)
    assert outcome(book.judge(capture(of=made))) == (APPLIED, None)
    before = copy_accounts(book.accounts)
    assert outcome(book.judge(capture(of=made, n=4))) == (REJECTED, RejectionCode.HOLD_NOT_ACTIVE)
    assert outcome(book.judge(void(of=made))) == (REJECTED, RejectionCode.HOLD_NOT_ACTIVE)
    assert book.accounts == before

    voided_book = example_book()
    voided_book.judge(made)
    assert outcome(voided_book.judge(void(of=made))) == (APPLIED, None)
    assert voided_book.accounts[key("ann")].pending == 0
    assert outcome(voided_book.judge(capture(of=made))) == (
        REJECTED,
        RejectionCode.HOLD_NOT_ACTIVE,
    )


def test_a_capture_or_void_at_or_after_expires_at_is_hold_expired() -> None:
    book, made = example_book(), hold(expires_in=60)
    book.judge(made)
    assert book.now is not None
    book.now += timedelta(seconds=59)
    # Still in time: a capture larger than the hold is refused for its amount, not its age.
    assert outcome(book.judge(capture(401, of=made))) == (
        REJECTED,
        RejectionCode.CAPTURE_EXCEEDS_HOLD,
    )
    book.now += timedelta(seconds=1)  # exactly expires_at
    assert outcome(book.judge(capture(of=made))) == (REJECTED, RejectionCode.HOLD_EXPIRED)
    assert outcome(book.judge(void(of=made))) == (REJECTED, RejectionCode.HOLD_EXPIRED)

    sweep(book.accounts, book.holds, book.now)
    assert book.holds[HOLD_ID].status == HoldStatus.EXPIRED
    assert book.accounts[key("ann")].pending == 0
    book.now = None  # an expired hold stays expired, whatever the clock says
    assert outcome(book.judge(capture(of=made))) == (REJECTED, RejectionCode.HOLD_EXPIRED)


def test_a_capture_beyond_the_held_amount_is_capture_exceeds_hold() -> None:
    book, made = example_book(), hold(400)
    book.judge(made)
    assert outcome(book.judge(capture(401, of=made))) == (
        REJECTED,
        RejectionCode.CAPTURE_EXCEEDS_HOLD,
    )
    assert outcome(book.judge(capture(400, of=made))) == (APPLIED, None)


def test_a_capture_from_a_wallet_frozen_after_the_hold_is_wallet_frozen_and_the_hold_stays() -> (
    None
):
    book, made = example_book(), hold(400)
    book.judge(made)
    set_status(book.accounts, SetStatus("ann", AccountStatus.FROZEN))
    assert outcome(book.judge(capture(of=made))) == (REJECTED, RejectionCode.WALLET_FROZEN)
    assert book.holds[HOLD_ID].status == HoldStatus.HELD
    assert book.accounts[key("ann")].pending == 400
    # A frozen wallet's hold can still be voided: nothing is debited.
    assert outcome(book.judge(void(of=made))) == (APPLIED, None)
    assert book.accounts[key("ann")].pending == 0

    frozen = example_book(ann_status=AccountStatus.FROZEN)
    assert outcome(frozen.judge(hold())) == (REJECTED, RejectionCode.WALLET_FROZEN)


def test_a_refund_of_a_capture_that_paid_a_wallet_takes_the_money_back_from_it() -> None:
    book, made = example_book(), hold(400, to_user_id="bob")
    book.judge(made)
    taken = capture(300, of=made)
    book.originals[taken.id] = original_of(taken, QUEUED, taken.amount)
    book.judge(taken)
    refund = Proposal(
        uuid.UUID(int=5), TENANT, TransactionType.REFUND, ASSET, 300, "ann", "bob", taken.id
    )
    assert outcome(book.judge(refund)) == (APPLIED, None)
    assert (book.accounts[key("ann")].balance, book.accounts[key("bob")].balance) == (1_000, 0)
    again = replace(refund, id=uuid.UUID(int=6), amount=1)
    assert outcome(book.judge(again)) == (REJECTED, RejectionCode.REFUND_EXCEEDS_ORIGINAL)
