"""The posting rules in memory: properties over random books, and an example per rejection.

No database and no broker. `Book` judges random sequences of transactions against random
wallets the way the posting engine judges one claimed batch; the properties are the
ledger's invariants (docs/design.md#invariants) and the rules of its transaction types
(docs/design.md#transaction-types), for the
six types that move money between a wallet and one other account. Holds, captures and
voids are not generated here.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.codes import RejectionCode
from ledger.money import MAX_AMOUNT
from ledger.proposals import SYSTEM_ACCOUNT_OF
from ledger.rules import (
    AccountKey,
    AccountState,
    Book,
    Judgement,
    Original,
    Proposal,
)
from ledger.vocabulary import AccountStatus, SystemAccount, TransactionStatus, TransactionType

T = TypeVar("T")

APPLIED = TransactionStatus.APPLIED
REJECTED = TransactionStatus.REJECTED

TENANTS = (uuid.UUID(int=1), uuid.UUID(int=2))
FOREIGN_TENANT = uuid.UUID(int=99)  # owns historic spends that no refund here may name
ASSETS = ("EUR", "GOLD_COINS")
USERS = ("ann", "bob", "cat", "dan", "eve")
# Credited by nothing but transfers: unless one names it, a wallet nobody ever created.
NOBODY = "nobody"

# No example database: several engineers share this checkout. No deadline: the two cores
# are shared too, and a slow example is not a failing one. A scenario of sixty transactions
# is many draws: generation is slow and large by design.
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- scenarios: accounts as intake left them, history, and a sequence to post ------------


@dataclass(frozen=True)
class Scenario:
    """What the engine finds when posting starts, and the transactions to post in order."""

    accounts: dict[AccountKey, AccountState]
    history: dict[uuid.UUID, Original]  # transactions decided before this sequence
    refunded: dict[uuid.UUID, int]  # applied refunds so far, per historic spend
    proposals: list[Proposal]

    def originals(self) -> dict[uuid.UUID, Original]:
        """Every transaction a refund can name, as recorded before posting starts."""
        queued = {
            p.id: Original(
                p.id,
                p.tenant_id,
                p.type,
                TransactionStatus.QUEUED,
                p.user_id,
                p.asset_code,
                p.amount,
            )
            for p in self.proposals
        }
        return {**self.history, **queued}

    def open_book(self) -> Book:
        """One book for the whole sequence, loaded the way `_open_book` loads a batch."""
        originals = self.originals()
        named = {p.original_transaction_id for p in self.proposals if p.type == "refund"}
        return Book(
            copy_accounts(self.accounts),
            originals={i: originals[i] for i in named if i in originals},
            refunded={i: self.refunded[i] for i in named if i in self.refunded},
        )


def copy_accounts(accounts: dict[AccountKey, AccountState]) -> dict[AccountKey, AccountState]:
    return {key: AccountState(**vars(state)) for key, state in accounts.items()}


# Strategies are built once: building one per draw costs more than the draw.
AMOUNT_SIZES = st.integers(0, 19)
SMALL_AMOUNTS = st.integers(1, 500)
ACCEPTED_AMOUNTS = st.integers(1, MAX_AMOUNT)
HUGE_AMOUNTS = st.integers(MAX_AMOUNT - 1_000, MAX_AMOUNT)
WALLET_EXISTS = st.sampled_from([True, True, True, False])
WALLET_STATUSES = st.sampled_from(["active"] * 6 + ["frozen", "closed"])
CREDIT_LIMITS = st.sampled_from([0, 0, 100, 10_000, MAX_AMOUNT])
# Balances and holds on the scale of small amounts, so debits often land at the edge.
BALANCES = st.sampled_from([0, 100, 1_000, 1_000, 5_000, 100_000])
PENDING = st.sampled_from([0, 0, 50, 500])
VERSIONS = st.integers(0, 50)
MOVES = (
    TransactionType.TOPUP,
    TransactionType.BONUS,
    TransactionType.SPEND,
    TransactionType.REFUND,
    TransactionType.TRANSFER,
    TransactionType.ADJUSTMENT,
)
KINDS = st.sampled_from(MOVES)
HISTORY_KINDS = st.sampled_from(["spend", "spend", "rejected spend", "topup", "foreign spend"])
REFUND_TARGETS = st.integers(0, 9)
REFUND_WALLETS = st.sampled_from(["its own"] * 2 + ["tenant", "asset", "owner"])
# What share of the spend a refund asks for: exact shares meet the cap head-on.
REFUND_SHARES = st.sampled_from(
    [
        lambda amount: amount,
        lambda amount: max(1, amount // 2),
        lambda amount: max(1, amount // 3),
        lambda amount: amount + 1,
        None,  # any amount
    ]
)
UNKNOWN_IDS = st.builds(uuid.UUID, int=st.integers(50_000, 60_000))


def draw_amount(draw: st.DrawFn) -> int:
    """Mostly small, sometimes anything intake accepts, now and then near MAX_AMOUNT."""
    size = draw(AMOUNT_SIZES)
    if size < 14:
        return draw(SMALL_AMOUNTS)
    return draw(ACCEPTED_AMOUNTS if size < 18 else HUGE_AMOUNTS)


def draw_wallet(draw: st.DrawFn, account_id: int, owner: str) -> AccountState:
    credit_limit = draw(CREDIT_LIMITS)
    return AccountState(
        id=account_id,
        owner=owner,
        is_system=False,
        status=draw(WALLET_STATUSES),
        credit_limit=credit_limit,
        balance=draw(BALANCES) - draw(st.integers(0, min(credit_limit, 1_000))),
        pending=draw(PENDING),
        version=draw(VERSIONS),
    )


def amount_of(record: Proposal | Original) -> int:
    """Set on every transaction this file makes (only captures and voids may lack one)."""
    assert record.amount is not None
    return record.amount


def owner_of(record: Proposal | Original) -> str:
    assert record.user_id is not None
    return record.user_id


def key_of(record: Proposal | Original, owner: str) -> AccountKey:
    assert record.asset_code is not None
    return (record.tenant_id, record.asset_code, owner)


def credited_wallets(proposal: Proposal) -> list[str]:
    """Who intake creates a wallet for (`TransactionRequest.credited_wallets`)."""
    if proposal.type in ("topup", "bonus") or (
        proposal.type == "adjustment" and amount_of(proposal) > 0
    ):
        return [owner_of(proposal)]
    if proposal.type == "transfer" and proposal.to_user_id:
        return [proposal.to_user_id]
    return []


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # sampled_from, not integers: Hypothesis draws an integer's lower bound far more often.
    tenants = TENANTS[: draw(st.sampled_from([1, 2, 2]))]
    assets = ASSETS[: draw(st.sampled_from([1, 2, 2]))]
    users = USERS[: draw(st.sampled_from([2, 3, 4, 5]))]
    some_tenant, some_asset = st.sampled_from(tenants), st.sampled_from(assets)
    some_user, some_debtor = st.sampled_from(users), st.sampled_from([*users, NOBODY])
    account_ids = itertools.count(1)

    accounts: dict[AccountKey, AccountState] = {}
    for tenant, asset in itertools.product(tenants, assets):
        in_wallets = 0
        for user in users:
            if draw(WALLET_EXISTS):
                wallet = draw_wallet(draw, next(account_ids), user)
                accounts[(tenant, asset, user)] = wallet
                in_wallets += wallet.balance
        for system in SystemAccount:
            # Whatever the wallets start with entered through @topup: the ledger sums to zero.
            balance = -in_wallets if system == SystemAccount.TOPUP else 0
            accounts[(tenant, asset, system.value)] = AccountState(
                next(account_ids), system.value, True, "active", 0, balance, 0, 0
            )

    history: dict[uuid.UUID, Original] = {}
    refunded: dict[uuid.UUID, int] = {}
    for n in range(draw(st.integers(0, 4))):
        kind = draw(HISTORY_KINDS)
        original = Original(
            id=uuid.UUID(int=1_000 + n),
            tenant_id=FOREIGN_TENANT if kind == "foreign spend" else draw(some_tenant),
            type="topup" if kind == "topup" else "spend",
            status=REJECTED if kind == "rejected spend" else APPLIED,
            user_id=draw(some_user),
            asset_code=draw(some_asset),
            amount=draw_amount(draw),
        )
        history[original.id] = original
        if kind == "spend" and (already := draw(st.integers(0, original.amount))):
            refunded[original.id] = already

    ids = [uuid.UUID(int=10_000 + i) for i in range(draw(st.integers(0, 60)))]
    proposals: list[Proposal] = []
    for pid in ids:
        kind = draw(KINDS)
        tenant, asset, amount = draw(some_tenant), draw(some_asset), draw_amount(draw)
        to_user_id = original_id = None
        if kind in ("topup", "bonus"):
            user_id = draw(some_user)
        elif kind == "transfer":
            user_id = draw(some_debtor)
            others = [user for user in users if user != user_id]
            to_user_id = draw(st.sampled_from([*others, *others, NOBODY, user_id]))
        elif kind == "adjustment" and draw(st.booleans()):
            user_id, amount = draw(some_debtor), -amount
        elif kind == "adjustment":
            user_id = draw(some_user)
        elif kind == "refund":
            refund = draw(refunds(proposals, ids, history, tenants, assets, users))
            original_id = refund.original_id
            tenant, asset = refund.tenant_id or tenant, refund.asset_code or asset
            user_id = refund.user_id or draw(some_debtor)
            amount = refund.amount or amount
        else:
            user_id = draw(some_debtor)
        proposals.append(
            Proposal(pid, tenant, kind, asset, amount, user_id, to_user_id, original_id)
        )

    # Intake creates every wallet a request credits, active and without credit, before the
    # engine posts anything (`ensure_wallets`).
    for proposal in proposals:
        for owner in credited_wallets(proposal):
            key = key_of(proposal, owner)
            if key not in accounts:
                accounts[key] = AccountState(next(account_ids), owner, False, "active", 0, 0, 0, 0)
    return Scenario(accounts, history, refunded, proposals)


def others_than(value: T, values: Sequence[T]) -> list[T]:
    """The other values, or the value itself when there is no other."""
    return [other for other in values if other != value] or [value]


@dataclass(frozen=True)
class Refund:
    """What a refund names and, when that is a transaction we know, its wallet and amount."""

    original_id: uuid.UUID
    tenant_id: uuid.UUID | None = None
    asset_code: str | None = None
    user_id: str | None = None
    amount: int | None = None


@st.composite
def refunds(
    draw: st.DrawFn,
    earlier: list[Proposal],
    ids: list[uuid.UUID],
    history: dict[uuid.UUID, Original],
    tenants: tuple[uuid.UUID, ...],
    assets: tuple[str, ...],
    users: tuple[str, ...],
) -> Refund:
    """Mostly of an earlier spend; else any id of the sequence (maybe a later one, or not a
    spend), a historic transaction, or an id nobody knows."""
    earlier_spends = [p for p in earlier if p.type == "spend"]
    target = draw(REFUND_TARGETS)
    named: Proposal | Original | None = None
    if target < 6 and earlier_spends:
        named = draw(st.sampled_from(earlier_spends))
    elif target < 8 and ids:
        original_id = draw(st.sampled_from(ids))
        named = next((p for p in earlier if p.id == original_id), None)
        if named is None:
            return Refund(original_id)
    elif target < 9 and history:  # a historic one: applied, rejected, a topup, foreign
        named = draw(st.sampled_from(list(history.values())))
    else:
        return Refund(draw(UNKNOWN_IDS))
    share = draw(REFUND_SHARES)
    amount = share(abs(amount_of(named))) if share else draw_amount(draw)
    # Mostly to the named spend's wallet; else to a wallet that differs from it in just its
    # tenant, asset or owner (a foreign tenant's spend is always named from one of ours).
    tenant_id, asset_code, user_id = key_of(named, owner_of(named))
    differs_in = draw(REFUND_WALLETS)
    if differs_in == "tenant" or tenant_id == FOREIGN_TENANT:
        tenant_id = draw(st.sampled_from(others_than(tenant_id, tenants)))
    elif differs_in == "asset":
        asset_code = draw(st.sampled_from(others_than(asset_code, assets)))
    elif differs_in == "owner":
        user_id = draw(st.sampled_from(others_than(user_id, [*users, NOBODY])))
    return Refund(named.id, tenant_id, asset_code, user_id, amount)


# --- judging a scenario -------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One judgement, with the book's accounts and refunded sums just before and after."""

    proposal: Proposal
    judgement: Judgement
    before: dict[AccountKey, AccountState]
    after: dict[AccountKey, AccountState]
    refunded_before: dict[uuid.UUID, int]
    refunded_after: dict[uuid.UUID, int]


def judge_as_one_book(scenario: Scenario) -> tuple[Book, list[Step]]:
    book = scenario.open_book()
    steps: list[Step] = []
    for proposal in scenario.proposals:
        before, refunded_before = copy_accounts(book.accounts), dict(book.refunded)
        judgement = book.judge(proposal)
        steps.append(
            Step(
                proposal,
                judgement,
                before,
                copy_accounts(book.accounts),
                refunded_before,
                dict(book.refunded),
            )
        )
    return book, steps


Outcome = tuple[TransactionStatus, RejectionCode | None]


def judge_one_at_a_time(scenario: Scenario) -> tuple[list[Outcome], dict[AccountKey, AccountState]]:
    """Each transaction its own book, loaded from what the ones before it decided: a batch
    of one, as the engine posts it when batches are off."""
    accounts = copy_accounts(scenario.accounts)
    originals = scenario.originals()
    decided: dict[uuid.UUID, TransactionStatus] = {}
    refunded = dict(scenario.refunded)
    outcomes: list[Outcome] = []
    for proposal in scenario.proposals:
        keys = [key for key in proposal.account_keys() if key in accounts]
        book = Book(copy_accounts({key: accounts[key] for key in keys}))
        original_id = proposal.original_transaction_id
        if proposal.type == "refund" and original_id in originals:
            assert original_id is not None
            original = originals[original_id]
            book.originals[original_id] = replace(
                original, status=decided.get(original_id, original.status)
            )
            if original_id in refunded:
                book.refunded[original_id] = refunded[original_id]
        judgement = book.judge(proposal)
        accounts.update(book.accounts)
        decided[proposal.id] = judgement.status
        if judgement.status == APPLIED and original_id is not None:
            refunded[original_id] = refunded.get(original_id, 0) + amount_of(proposal)
        outcomes.append((judgement.status, judgement.code))
    return outcomes, accounts


def expected_move(proposal: Proposal) -> tuple[str, str, int]:
    """(debited owner, credited owner, amount), as the table in
    docs/design.md#transaction-types has it."""
    user, amount = owner_of(proposal), amount_of(proposal)
    if proposal.type == "transfer":
        return user, str(proposal.to_user_id), amount
    system = SYSTEM_ACCOUNT_OF[TransactionType(proposal.type)].value
    if proposal.type == "spend" or (proposal.type == "adjustment" and amount < 0):
        return user, system, abs(amount)
    return system, user, amount


def sums_by_tenant_and_asset(accounts: dict[AccountKey, AccountState]) -> dict[tuple, int]:
    sums: dict[tuple, int] = defaultdict(int)
    for (tenant, asset, _), state in accounts.items():
        sums[(tenant, asset)] += state.balance
    return dict(sums)


def applied(steps: list[Step]) -> Iterator[Step]:
    return (step for step in steps if step.judgement.status == APPLIED)


def line_keys(step: Step) -> list[AccountKey]:
    by_id = {state.id: key for key, state in step.after.items()}
    return [by_id[line.account.id] for line in step.judgement.lines]


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios())
def test_money_is_conserved_per_tenant_and_asset_after_any_sequence(scenario: Scenario) -> None:
    book, steps = judge_as_one_book(scenario)

    assert set(sums_by_tenant_and_asset(scenario.accounts).values()) == {0}
    for step in steps:
        assert sum(line.amount for line in step.judgement.lines) == 0
        assert set(sums_by_tenant_and_asset(step.after).values()) == {0}
    assert set(sums_by_tenant_and_asset(book.accounts).values()) == {0}


@PROPERTY_SETTINGS
@given(scenarios())
def test_an_applied_transaction_moves_its_amount_between_the_accounts_its_type_names(
    scenario: Scenario,
) -> None:
    _, steps = judge_as_one_book(scenario)

    for step in applied(steps):
        debited, credited, amount = expected_move(step.proposal)
        assert [(line.account.owner, line.amount) for line in step.judgement.lines] == [
            (debited, -amount),
            (credited, amount),
        ]
        assert line_keys(step) == [key_of(step.proposal, debited), key_of(step.proposal, credited)]


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_wallet_goes_below_its_credit_limit_and_frozen_or_closed_wallets_are_not_debited(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)

    for step in applied(steps):
        for line, key in zip(step.judgement.lines, line_keys(step), strict=True):
            before, after = step.before[key], step.after[key]
            if before.is_system:
                continue
            assert -MAX_AMOUNT <= after.balance <= MAX_AMOUNT
            assert after.balance >= -after.credit_limit
            assert before.status != AccountStatus.CLOSED
            if line.amount < 0:
                assert before.status == AccountStatus.ACTIVE
                assert after.balance - after.pending + after.credit_limit >= 0
    for state in book.accounts.values():
        assert state.is_system or state.balance >= -state.credit_limit


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_rejected_transaction_changes_nothing_and_gives_a_stable_code(
    scenario: Scenario,
) -> None:
    book = scenario.open_book()
    for proposal in scenario.proposals:
        before, refunded_before = copy_accounts(book.accounts), dict(book.refunded)
        judgement = book.judge(proposal)
        if judgement.status == APPLIED:
            assert judgement.code is None
            continue

        assert judgement.status == REJECTED
        assert isinstance(judgement.code, RejectionCode)
        assert judgement.lines == ()
        assert book.accounts == before
        assert book.refunded == refunded_before
        assert book.judge(proposal) == judgement  # the same state, the same answer
        assert book.accounts == before


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_transaction_is_rejected_exactly_when_it_breaks_a_rule_and_names_one_it_breaks(
    scenario: Scenario,
) -> None:
    book = scenario.open_book()
    for proposal in scenario.proposals:
        broken = broken_rules(
            proposal, copy_accounts(book.accounts), book.originals, dict(book.judged), book.refunded
        )
        judgement = book.judge(proposal)

        if judgement.status == APPLIED:
            assert broken == set()
        else:
            assert judgement.code in broken


def broken_rules(
    proposal: Proposal,
    accounts: dict[AccountKey, AccountState],
    originals: dict[uuid.UUID, Original],
    decided: dict[uuid.UUID, TransactionStatus],
    refunded: dict[uuid.UUID, int],
) -> set[RejectionCode]:
    """The rules of docs/design.md#transaction-types that `proposal` breaks, judged against
    the state before it.

    Written out again here rather than asked of `ledger.rules`, so a broken rule there
    cannot vouch for itself.
    """
    debited_owner, credited_owner, amount = expected_move(proposal)
    debited = accounts.get(key_of(proposal, debited_owner))
    credited = accounts.get(key_of(proposal, credited_owner))
    if debited is None or credited is None:
        return {RejectionCode.WALLET_NOT_FOUND}
    broken: set[RejectionCode] = set()
    if proposal.type == "transfer" and debited is credited:
        broken.add(RejectionCode.SAME_WALLET)
    wallets = [state for state in (debited, credited) if not state.is_system]
    if any(state.status == AccountStatus.CLOSED for state in wallets):
        broken.add(RejectionCode.WALLET_CLOSED)
    if not debited.is_system and debited.status == AccountStatus.FROZEN:
        broken.add(RejectionCode.WALLET_FROZEN)
    available = debited.balance - debited.pending + debited.credit_limit
    if not debited.is_system and available < amount:
        broken.add(RejectionCode.INSUFFICIENT_FUNDS)
    # Only a wallet has a ceiling; system accounts grow without bound.
    if (not credited.is_system and credited.balance + amount > MAX_AMOUNT) or (
        not debited.is_system and debited.balance - amount < -MAX_AMOUNT
    ):
        broken.add(RejectionCode.BALANCE_LIMIT_EXCEEDED)
    if proposal.type == "refund":
        named = proposal.original_transaction_id
        original = originals.get(named) if named is not None else None
        if (
            original is None
            or original.tenant_id != proposal.tenant_id
            or original.type not in ("spend", "capture")
        ):
            broken.add(RejectionCode.ORIGINAL_NOT_FOUND)
        else:
            if decided.get(original.id, original.status) != APPLIED:
                broken.add(RejectionCode.ORIGINAL_NOT_APPLIED)
            if (original.user_id, original.asset_code) != (proposal.user_id, proposal.asset_code):
                broken.add(RejectionCode.ORIGINAL_MISMATCH)
            if refunded.get(original.id, 0) + amount > amount_of(original):
                broken.add(RejectionCode.REFUND_EXCEEDS_ORIGINAL)
    return broken


@PROPERTY_SETTINGS
@given(scenarios())
def test_refunds_never_exceed_their_spend_and_only_refund_applied_spends_of_the_same_wallet(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    originals = scenario.originals()
    decided: dict[uuid.UUID, TransactionStatus] = {}
    refunded_in_sequence: Counter[uuid.UUID] = Counter()

    for step in steps:
        proposal = step.proposal
        if proposal.type == "refund" and step.judgement.status == APPLIED:
            assert proposal.original_transaction_id is not None
            spend = originals[proposal.original_transaction_id]
            assert spend.type == "spend"
            assert decided.get(spend.id, spend.status) == APPLIED
            assert (spend.tenant_id, spend.user_id, spend.asset_code) == (
                proposal.tenant_id,
                proposal.user_id,
                proposal.asset_code,
            )
            refunded_in_sequence[spend.id] += amount_of(proposal)
        decided[proposal.id] = step.judgement.status

    for spend_id, amount in refunded_in_sequence.items():
        total = scenario.refunded.get(spend_id, 0) + amount
        assert total <= amount_of(originals[spend_id])
        assert book.refunded[spend_id] == total


@PROPERTY_SETTINGS
@given(scenarios())
def test_one_book_for_the_sequence_decides_as_one_book_per_transaction(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    outcomes, accounts = judge_one_at_a_time(scenario)

    assert [(step.judgement.status, step.judgement.code) for step in steps] == outcomes
    assert {key: (s.balance, s.version) for key, s in book.accounts.items()} == {
        key: (s.balance, s.version) for key, s in accounts.items()
    }


@PROPERTY_SETTINGS
@given(scenarios())
def test_each_line_bumps_its_account_version_by_one_and_records_the_balance_after(
    scenario: Scenario,
) -> None:
    book, steps = judge_as_one_book(scenario)
    lines_per_account: Counter[AccountKey] = Counter()
    moved_per_account: Counter[AccountKey] = Counter()

    for step in steps:
        keys = line_keys(step)
        assert len(set(keys)) == len(keys)
        for line, key in zip(step.judgement.lines, keys, strict=True):
            before, after = step.before[key], step.after[key]
            assert line.version == before.version + 1 == after.version
            assert line.balance_after == before.balance + line.amount == after.balance
            assert line.account is book.accounts[key]  # what the engine writes back
            lines_per_account[key] += 1
            moved_per_account[key] += line.amount
        untouched = set(step.before) - set(keys)
        assert {key: step.after[key] for key in untouched} == {
            key: step.before[key] for key in untouched
        }

    for key, state in book.accounts.items():
        start = scenario.accounts[key]
        assert state.version == start.version + lines_per_account[key]
        assert state.balance == start.balance + moved_per_account[key]  # the sum of its entries
        assert state.touched == (lines_per_account[key] > 0)


# --- examples: one per rejection code, so the rules read as a list ------------------------

TENANT, OTHER_TENANT = TENANTS
SPEND, TOPUP, REFUND = TransactionType.SPEND, TransactionType.TOPUP, TransactionType.REFUND
TRANSFER, ADJUSTMENT = TransactionType.TRANSFER, TransactionType.ADJUSTMENT
example_ids = (uuid.UUID(int=100_000 + n) for n in itertools.count())


def wallet(
    owner: str,
    balance: int = 0,
    *,
    status: AccountStatus = AccountStatus.ACTIVE,
    credit_limit: int = 0,
    pending: int = 0,
) -> AccountState:
    return AccountState(0, owner, False, status, credit_limit, balance, pending, 0)


def ledger_book(*wallets: AccountState, assets: tuple[str, ...] = ("EUR",)) -> Book:
    """A book of one tenant: the wallets in every asset, and the four system accounts."""
    account_ids = itertools.count(1)
    accounts: dict[AccountKey, AccountState] = {}
    for asset in assets:
        for state in wallets:
            accounts[(TENANT, asset, state.owner)] = replace(state, id=next(account_ids))
        for system in SystemAccount:
            balance = -sum(w.balance for w in wallets) if system == SystemAccount.TOPUP else 0
            accounts[(TENANT, asset, system.value)] = AccountState(
                next(account_ids), system.value, True, AccountStatus.ACTIVE, 0, balance, 0, 0
            )
    return Book(accounts)


def txn(
    type: TransactionType,
    user_id: str,
    amount: int,
    *,
    to: str | None = None,
    refunds: uuid.UUID | None = None,
    asset: str = "EUR",
) -> Proposal:
    return Proposal(next(example_ids), TENANT, type, asset, amount, user_id, to, refunds)


def recorded_spend(
    book: Book,
    user_id: str,
    amount: int,
    *,
    status: TransactionStatus = APPLIED,
    type: TransactionType = TransactionType.SPEND,
    tenant_id: uuid.UUID = TENANT,
) -> uuid.UUID:
    """A transaction decided before the book opened, loaded for the refunds that name it."""
    spend = Original(next(example_ids), tenant_id, type, status, user_id, "EUR", amount)
    book.originals[spend.id] = spend
    return spend.id


def queue_in(book: Book, *spends: Proposal) -> None:
    """Spends of the book's own batch: recorded as queued when the book opened."""
    for spend in spends:
        book.originals[spend.id] = Original(
            spend.id, TENANT, SPEND, TransactionStatus.QUEUED, spend.user_id, "EUR", spend.amount
        )


def balance(book: Book, owner: str, asset: str = "EUR") -> int:
    return book.accounts[(TENANT, asset, owner)].balance


def test_a_debit_beyond_balance_less_pending_plus_credit_limit_is_insufficient_funds() -> None:
    book = ledger_book(wallet("ann", 100, pending=30, credit_limit=20), wallet("bob"))

    assert book.judge(txn(SPEND, "ann", 91)).code == RejectionCode.INSUFFICIENT_FUNDS
    assert book.judge(txn(TRANSFER, "ann", 91, to="bob")).code == RejectionCode.INSUFFICIENT_FUNDS
    assert book.judge(txn(ADJUSTMENT, "ann", -91)).code == RejectionCode.INSUFFICIENT_FUNDS
    assert book.judge(txn(SPEND, "ann", 90)).status == APPLIED
    assert balance(book, "ann") == 10
    assert balance(book, "@revenue") == 90


def test_a_frozen_wallet_cannot_be_debited_but_can_be_credited() -> None:
    book = ledger_book(wallet("ann", 100, status=AccountStatus.FROZEN), wallet("bob", 100))

    assert book.judge(txn(SPEND, "ann", 1)).code == RejectionCode.WALLET_FROZEN
    assert book.judge(txn(TRANSFER, "ann", 1, to="bob")).code == RejectionCode.WALLET_FROZEN
    assert book.judge(txn(ADJUSTMENT, "ann", -1)).code == RejectionCode.WALLET_FROZEN
    assert book.judge(txn(TOPUP, "ann", 5)).status == APPLIED
    assert book.judge(txn(TRANSFER, "bob", 5, to="ann")).status == APPLIED
    assert balance(book, "ann") == 110


def test_a_closed_wallet_can_be_neither_debited_nor_credited() -> None:
    book = ledger_book(wallet("ann", 100, status=AccountStatus.CLOSED), wallet("bob", 100))

    for proposal in (
        txn(SPEND, "ann", 1),
        txn(TOPUP, "ann", 1),
        txn(ADJUSTMENT, "ann", 1),
        txn(TRANSFER, "ann", 1, to="bob"),
        txn(TRANSFER, "bob", 1, to="ann"),
    ):
        assert book.judge(proposal).code == RejectionCode.WALLET_CLOSED
    assert (balance(book, "ann"), balance(book, "bob")) == (100, 100)


def test_a_wallet_the_book_does_not_hold_is_wallet_not_found() -> None:
    book = ledger_book(wallet("ann", 100))

    assert book.judge(txn(SPEND, "zoe", 1)).code == RejectionCode.WALLET_NOT_FOUND
    assert book.judge(txn(TRANSFER, "ann", 1, to="zoe")).code == RejectionCode.WALLET_NOT_FOUND
    assert book.judge(txn(SPEND, "ann", 1, asset="GOLD_COINS")).code == (
        RejectionCode.WALLET_NOT_FOUND
    )
    assert balance(book, "ann") == 100


def test_a_transfer_to_its_own_wallet_is_same_wallet() -> None:
    book = ledger_book(wallet("ann", 100))

    assert book.judge(txn(TRANSFER, "ann", 1, to="ann")).code == RejectionCode.SAME_WALLET
    assert book.accounts[(TENANT, "EUR", "ann")].version == 0


def test_a_refund_naming_no_spend_of_its_tenant_is_original_not_found() -> None:
    book = ledger_book(wallet("ann", 100))
    topup = recorded_spend(book, "ann", 50, type=TOPUP)
    foreign_spend = recorded_spend(book, "ann", 50, tenant_id=OTHER_TENANT)

    for named in (topup, foreign_spend, uuid.UUID(int=7)):
        refund = txn(REFUND, "ann", 1, refunds=named)
        assert book.judge(refund).code == RejectionCode.ORIGINAL_NOT_FOUND


def test_a_refund_of_a_spend_that_was_not_applied_is_original_not_applied() -> None:
    book = ledger_book(wallet("ann", 10))
    rejected = recorded_spend(book, "ann", 50, status=REJECTED)
    spend, later_spend = txn(SPEND, "ann", 50), txn(SPEND, "ann", 5)
    queue_in(book, spend, later_spend)

    assert book.judge(spend).code == RejectionCode.INSUFFICIENT_FUNDS
    for named in (rejected, spend.id, later_spend.id):
        refund = txn(REFUND, "ann", 1, refunds=named)
        assert book.judge(refund).code == RejectionCode.ORIGINAL_NOT_APPLIED


def test_a_refund_of_a_spend_applied_earlier_in_the_book_is_applied() -> None:
    book = ledger_book(wallet("ann", 100))
    spend = txn(SPEND, "ann", 60)
    queue_in(book, spend)

    assert book.judge(spend).status == APPLIED
    assert book.judge(txn(REFUND, "ann", 60, refunds=spend.id)).status == APPLIED
    assert (balance(book, "ann"), balance(book, "@revenue")) == (100, 0)


def test_a_refund_to_another_wallet_or_asset_than_the_spends_is_original_mismatch() -> None:
    book = ledger_book(wallet("ann", 100), wallet("bob", 100), assets=("EUR", "GOLD_COINS"))
    spend = recorded_spend(book, "ann", 50)

    assert book.judge(txn(REFUND, "bob", 1, refunds=spend)).code == RejectionCode.ORIGINAL_MISMATCH
    gold_refund = txn(REFUND, "ann", 1, refunds=spend, asset="GOLD_COINS")
    assert book.judge(gold_refund).code == RejectionCode.ORIGINAL_MISMATCH


def test_refunds_beyond_their_spend_are_refund_exceeds_original() -> None:
    book = ledger_book(wallet("ann"))
    spend = recorded_spend(book, "ann", 100)
    book.refunded[spend] = 30  # applied before the book opened

    assert book.judge(txn(REFUND, "ann", 50, refunds=spend)).status == APPLIED
    assert book.judge(txn(REFUND, "ann", 21, refunds=spend)).code == (
        RejectionCode.REFUND_EXCEEDS_ORIGINAL
    )
    assert book.judge(txn(REFUND, "ann", 20, refunds=spend)).status == APPLIED
    assert book.judge(txn(REFUND, "ann", 1, refunds=spend)).code == (
        RejectionCode.REFUND_EXCEEDS_ORIGINAL
    )
    assert book.refunded[spend] == 100
    assert balance(book, "ann") == 70


def test_a_wallet_balance_beyond_max_amount_is_balance_limit_exceeded() -> None:
    book = ledger_book(wallet("ann", MAX_AMOUNT - 5), wallet("bob"))

    assert book.judge(txn(TOPUP, "ann", 6)).code == RejectionCode.BALANCE_LIMIT_EXCEEDED
    assert book.judge(txn(TOPUP, "ann", 5)).status == APPLIED
    assert balance(book, "@topup") == -MAX_AMOUNT
    assert (balance(book, "ann"), balance(book, "bob")) == (MAX_AMOUNT, 0)


def test_a_system_account_never_blocks_on_its_own_size() -> None:
    book = ledger_book(wallet("ann", MAX_AMOUNT - 5), wallet("bob"))
    book.judge(txn(TOPUP, "ann", 5))

    # @topup is at -MAX_AMOUNT: bob's top-up still applies, taking it past the ceiling.
    assert book.judge(txn(TOPUP, "bob", MAX_AMOUNT)).status == APPLIED
    assert balance(book, "@topup") == -2 * MAX_AMOUNT
    assert (balance(book, "ann"), balance(book, "bob")) == (MAX_AMOUNT, MAX_AMOUNT)
