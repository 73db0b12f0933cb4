"""The posting rules: judging transactions against account states, in memory.

No SQL and no I/O: the posting engine loads and locks the accounts (and holds) a batch
touches, hands them to a `Book`, and writes back what the book decided. Tests run the same
rules with no database at all. A book judges transactions one after another, each against
the balances and holds its predecessors left; a rejection changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from ledger.codes import RejectionCode
from ledger.legs import Leg, allocate_pro_rata
from ledger.money import MAX_AMOUNT
from ledger.proposals import AccountKey, Original, Proposal
from ledger.vocabulary import (
    AccountStatus,
    HoldStatus,
    TransactionStatus,
    TransactionType,
)

RowT = TypeVar("RowT", "AccountState", "Proposal", "Original", "HoldState")


def from_row(kind: type[RowT], row: Mapping[Any, Any]) -> RowT:
    """A rules record from a database row (or any mapping) that holds its fields."""
    return kind(**{f.name: row[f.name] for f in fields(kind) if f.name in row})


def available_balance(balance: int, pending: int, credit_limit: int) -> int:
    """What a wallet can spend: its balance, less what holds reserve, plus its credit."""
    return balance - pending + credit_limit


@dataclass
class AccountState:
    """An account as a book sees it: balances move here before anything is written."""

    id: int
    owner: str
    is_system: bool
    status: str
    credit_limit: int
    balance: int
    pending: int
    version: int
    asset_code: str = ""
    touched: bool = False

    def available(self) -> int:
        return available_balance(self.balance, self.pending, self.credit_limit)


@dataclass
class HoldState:
    """A hold as a book sees it: its state moves here before it is written."""

    transaction_id: uuid.UUID
    tenant_id: uuid.UUID
    seq: int
    account_id: int
    # None when the hold splits: its legs are the capture's destinations.
    destination_account_id: int | None
    amount: int
    status: str
    expires_at: datetime
    captured_amount: int | None = None
    captured_by: uuid.UUID | None = None
    voided_by: uuid.UUID | None = None
    released_at: datetime | None = None
    is_new: bool = False
    changed: bool = False


@dataclass(frozen=True)
class Line:
    """One journal line a judgement writes: the account, the signed amount, and after."""

    account: AccountState
    amount: int
    balance_after: int
    version: int


@dataclass(frozen=True)
class Judgement:
    """The outcome of one transaction: applied with its journal lines (and the hold it made
    or changed, the amount a capture or void settled on, and the legs a split capture or a
    refund paid or took back), or rejected with its code and what it concerned (`detail`,
    e.g. the leg that could not give its part back)."""

    status: TransactionStatus
    code: RejectionCode | None = None
    lines: tuple[Line, ...] = ()
    hold: HoldState | None = None
    amount: int | None = None
    legs: tuple[Leg, ...] | None = None
    detail: str | None = None


class Rejected(Exception):
    """A business rule said no; carries the stable code, and what it concerned."""

    def __init__(self, code: RejectionCode, detail: str | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.detail = detail


@dataclass
class Book:
    """The accounts and holds of one batch, what it knows of refunded spends and captures,
    and the batch's clock; judges transactions in order."""

    accounts: dict[AccountKey, AccountState]
    originals: dict[uuid.UUID, Original] = field(default_factory=dict)
    refunded: dict[uuid.UUID, int] = field(default_factory=dict)
    holds: dict[uuid.UUID, HoldState] = field(default_factory=dict)
    # The batch's time: a hold is expired from its `expires_at` on. None: nothing expires.
    now: datetime | None = None
    # Outcomes (and settled amounts) judged by this book: a refund may name a spend or a
    # capture judged earlier in it, a capture a hold made earlier in it.
    judged: dict[uuid.UUID, TransactionStatus] = field(default_factory=dict)
    settled: dict[uuid.UUID, int] = field(default_factory=dict)
    # What each leg of a split spend or capture gave back so far: (original id, owner) ->
    # amount; and the legs a capture judged in this book paid.
    leg_refunded: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)
    settled_legs: dict[uuid.UUID, tuple[Leg, ...]] = field(default_factory=dict)

    def judge(self, txn: Proposal) -> Judgement:
        """Apply `txn` to the book's accounts and holds, or reject it having changed nothing."""
        judges = {
            TransactionType.HOLD: self._hold,
            TransactionType.CAPTURE: self._capture,
            TransactionType.VOID: self._void,
            TransactionType.REFUND: self._refund,
            TransactionType.EXCHANGE: self._exchange,
            TransactionType.JOURNAL: self._journal,
        }
        try:
            judgement = judges.get(TransactionType(txn.type), self._move)(txn)
        except Rejected as rejection:
            judgement = Judgement(
                TransactionStatus.REJECTED, rejection.code, detail=rejection.detail
            )
        self.judged[txn.id] = judgement.status
        if judgement.amount is not None:
            self.settled[txn.id] = judgement.amount
        if judgement.legs is not None and txn.type == TransactionType.CAPTURE:
            self.settled_legs[txn.id] = judgement.legs
        return judgement

    def account(self, key: AccountKey) -> AccountState:
        state = self.accounts.get(key)
        if state is None:
            raise Rejected(RejectionCode.WALLET_NOT_FOUND)
        return state

    def _move(self, txn: Proposal) -> Judgement:
        """Money between a wallet and other accounts: top-ups, bonuses, spends, payouts,
        transfers and adjustments, split or not."""
        assert txn.amount is not None  # the request checks it for these types
        if txn.splits:
            return self._pay_legs(txn, txn.amount, txn.splits)
        wallet_key, other_key = txn.account_keys()
        wallet, other = self.account(wallet_key), self.account(other_key)
        amount = abs(txn.amount)
        debit, credit = other, wallet
        if txn.type == TransactionType.TRANSFER:
            if other.id == wallet.id:
                raise Rejected(RejectionCode.SAME_WALLET)
            debit, credit = wallet, other
        elif txn.type in (TransactionType.SPEND, TransactionType.PAYOUT) or (
            txn.type == TransactionType.ADJUSTMENT and txn.amount < 0
        ):
            debit, credit = wallet, other
        _check_open(debit, credit)
        _check_spendable(debit, amount)
        _check_limits(debit, credit, amount)
        return Judgement(
            TransactionStatus.APPLIED,
            lines=(_book(debit, -amount), _book(credit, amount)),
        )

    def _pay_legs(self, txn: Proposal, amount: int, legs: tuple[Leg, ...]) -> Judgement:
        """A split spend or transfer: the wallet pays `amount`, each leg receives its part;
        all legs or none."""
        assert txn.user_id is not None and txn.asset_code is not None
        _check_legs(legs, amount)
        wallet = self.account((txn.tenant_id, txn.asset_code, txn.user_id))
        receivers = self._leg_accounts(txn, legs)
        if any(account.id == wallet.id for account in receivers):
            raise Rejected(RejectionCode.SAME_WALLET)
        _check_open(wallet, *receivers)
        _check_spendable(wallet, amount)
        if wallet.balance - amount < -MAX_AMOUNT:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)
        for account, leg in zip(receivers, legs, strict=True):
            _check_limits(wallet, account, leg.amount)
        lines = [_book(wallet, -amount)]
        lines += [_book(account, leg.amount) for account, leg in zip(receivers, legs, strict=True)]
        return Judgement(TransactionStatus.APPLIED, lines=tuple(lines), legs=legs)

    def _leg_accounts(self, txn: Proposal, legs: tuple[Leg, ...]) -> list[AccountState]:
        assert txn.asset_code is not None
        return [self.account((txn.tenant_id, txn.asset_code, leg.owner)) for leg in legs]

    def _hold(self, txn: Proposal) -> Judgement:
        """Reserve funds: the wallet's pending grows; no money moves yet."""
        assert txn.amount is not None and txn.expires_at is not None  # checked at intake
        wallet_key, *destination_keys = txn.account_keys()
        wallet = self.account(wallet_key)
        destinations = [self.account(key) for key in destination_keys]
        if any(destination.id == wallet.id for destination in destinations):
            raise Rejected(RejectionCode.SAME_WALLET)
        _check_open(wallet, *destinations)
        _check_spendable(wallet, txn.amount)
        if wallet.pending + txn.amount > MAX_AMOUNT:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)
        _reserve(wallet, txn.amount)
        hold = HoldState(
            transaction_id=txn.id,
            tenant_id=txn.tenant_id,
            seq=txn.seq,
            account_id=wallet.id,
            destination_account_id=None if txn.splits else destinations[0].id,
            amount=txn.amount,
            status=HoldStatus.HELD,
            expires_at=txn.expires_at,
            is_new=True,
            changed=True,
        )
        self.holds[txn.id] = hold
        return Judgement(TransactionStatus.APPLIED, hold=hold)

    def _capture(self, txn: Proposal) -> Judgement:
        """Move all or part of a hold to its destination, or its legs; the rest is released.
        A partial capture of a split hold pays each leg pro rata (`allocate_pro_rata`)."""
        hold = self._active_hold(txn)
        amount = hold.amount if txn.amount is None else txn.amount
        if amount > hold.amount:
            raise Rejected(RejectionCode.CAPTURE_EXCEEDS_HOLD)
        wallet_key, *destination_keys = txn.account_keys()
        wallet = self.account(wallet_key)
        destinations = [self.account(key) for key in destination_keys]
        legs: tuple[Leg, ...] | None = None
        if txn.splits:
            legs = txn.splits
            if sum(leg.amount for leg in legs) != amount:
                shares = allocate_pro_rata(amount, [leg.amount for leg in legs])
                legs = tuple(Leg(leg.owner, share) for leg, share in zip(legs, shares, strict=True))
        if wallet.id != hold.account_id or (
            legs is None and destinations[0].id != hold.destination_account_id
        ):
            raise Rejected(RejectionCode.HOLD_NOT_FOUND)
        if any(destination.id == wallet.id for destination in destinations):
            raise Rejected(RejectionCode.SAME_WALLET)
        _check_open(wallet, *destinations)
        # The funds were reserved, but a frozen wallet is never debited: the hold stays held
        # until it is voided, expires, or the wallet is unfrozen.
        if wallet.status == AccountStatus.FROZEN:
            raise Rejected(RejectionCode.WALLET_FROZEN)
        if wallet.balance - amount < -wallet.credit_limit:
            raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)
        parts = [leg.amount for leg in legs] if legs is not None else [amount]
        paid = [(d, part) for d, part in zip(destinations, parts, strict=True) if part]
        for destination, part in paid:
            _check_limits(wallet, destination, part)
        _reserve(wallet, -hold.amount, bump=False)
        lines = [_book(wallet, -amount)]
        lines += [_book(destination, part) for destination, part in paid]
        if legs is not None:
            legs = tuple(leg for leg in legs if leg.amount)
        self._settle(hold, HoldStatus.CAPTURED, captured_amount=amount, captured_by=txn.id)
        return Judgement(
            TransactionStatus.APPLIED, lines=tuple(lines), hold=hold, amount=amount, legs=legs
        )

    def _void(self, txn: Proposal) -> Judgement:
        """Release a hold whole: the wallet's pending drops by the held amount."""
        hold = self._active_hold(txn)
        (wallet_key,) = txn.account_keys()
        wallet = self.account(wallet_key)
        if wallet.id != hold.account_id:
            raise Rejected(RejectionCode.HOLD_NOT_FOUND)
        _reserve(wallet, -hold.amount)
        self._settle(hold, HoldStatus.VOIDED, voided_by=txn.id)
        return Judgement(TransactionStatus.APPLIED, hold=hold, amount=hold.amount)

    def _active_hold(self, txn: Proposal) -> HoldState:
        """The held hold a capture or void names, or Rejected saying why it is not one."""
        hold_id = txn.original_transaction_id
        hold = self.holds.get(hold_id) if hold_id is not None else None
        if hold is None or hold.tenant_id != txn.tenant_id:
            original = self.originals.get(hold_id) if hold_id is not None else None
            if (
                original is not None
                and original.tenant_id == txn.tenant_id
                and original.type == TransactionType.HOLD
                and self.judged.get(original.id, original.status) == TransactionStatus.QUEUED
            ):
                raise Rejected(RejectionCode.HOLD_NOT_ACTIVE)
            raise Rejected(RejectionCode.HOLD_NOT_FOUND)
        if hold.status in (HoldStatus.CAPTURED, HoldStatus.VOIDED):
            raise Rejected(RejectionCode.HOLD_NOT_ACTIVE)
        if hold.status == HoldStatus.EXPIRED or (
            self.now is not None and self.now >= hold.expires_at
        ):
            raise Rejected(RejectionCode.HOLD_EXPIRED)
        return hold

    def _refund(self, txn: Proposal) -> Judgement:
        """Give a spend or capture back: each leg it paid returns its part to the wallet,
        by default pro rata to what each leg has left to give back, or as `splits` say."""
        assert txn.amount is not None and txn.asset_code is not None
        wallet = self.account((txn.tenant_id, txn.asset_code, str(txn.user_id)))
        original = self._refundable(txn)
        legs = self._legs_of(original, txn)
        left = [leg.amount - self.leg_refunded.get((original.id, leg.owner), 0) for leg in legs]
        if txn.splits is None:
            parts = allocate_pro_rata(txn.amount, left)
        else:
            _check_legs(txn.splits, txn.amount)
            asked = {leg.owner: leg.amount for leg in txn.splits}
            strangers = sorted(set(asked) - {leg.owner for leg in legs})
            if strangers:
                raise Rejected(RejectionCode.INVALID_SPLITS, f"not a leg: {strangers[0]}")
            parts = [asked.get(leg.owner, 0) for leg in legs]
            for leg, part, remaining in zip(legs, parts, left, strict=True):
                if part > remaining:
                    raise Rejected(RejectionCode.REFUND_EXCEEDS_ORIGINAL, f"leg {leg.owner}")
        givers = [
            (self.account((txn.tenant_id, txn.asset_code, leg.owner)), leg, part)
            for leg, part in zip(legs, parts, strict=True)
            if part
        ]
        _check_open(wallet)
        for account, leg, part in givers:
            try:
                _check_open(account)
                _check_spendable(account, part)
                _check_limits(account, wallet, part)
            except Rejected as rejection:
                raise Rejected(rejection.code, f"leg {leg.owner}") from None
        if not wallet.is_system and wallet.balance + txn.amount > MAX_AMOUNT:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)
        lines = [_book(account, -part) for account, _, part in givers]
        lines.append(_book(wallet, txn.amount))
        self.refunded[original.id] = self.refunded.get(original.id, 0) + txn.amount
        for _, leg, part in givers:
            key = (original.id, leg.owner)
            self.leg_refunded[key] = self.leg_refunded.get(key, 0) + part
        returned = tuple(Leg(leg.owner, part) for _, leg, part in givers)
        return Judgement(TransactionStatus.APPLIED, lines=tuple(lines), legs=returned)

    def _refundable(self, txn: Proposal) -> Original:
        """The applied spend or capture of the same wallet and asset that `txn` refunds, with
        room left for its amount; or Rejected saying why not."""
        original_id = txn.original_transaction_id
        original = self.originals.get(original_id) if original_id is not None else None
        if (
            original is None
            or original.tenant_id != txn.tenant_id
            or original.type not in (TransactionType.SPEND, TransactionType.CAPTURE)
        ):
            raise Rejected(RejectionCode.ORIGINAL_NOT_FOUND)
        if self.judged.get(original.id, original.status) != TransactionStatus.APPLIED:
            raise Rejected(RejectionCode.ORIGINAL_NOT_APPLIED)
        if original.user_id != txn.user_id or original.asset_code != txn.asset_code:
            raise Rejected(RejectionCode.ORIGINAL_MISMATCH)
        # A capture judged in this book settled its amount here, not yet in its row.
        refundable = self.settled.get(original.id, original.amount) or 0
        assert txn.amount is not None
        if self.refunded.get(original.id, 0) + txn.amount > refundable:
            raise Rejected(RejectionCode.REFUND_EXCEEDS_ORIGINAL)
        return original

    def _legs_of(self, original: Original, refund: Proposal) -> tuple[Leg, ...]:
        """Where an applied spend or capture paid its money, and how much to each. (Intake
        copies a capture's wallet destination onto its refunds too.)"""
        legs = self.settled_legs.get(original.id) or original.splits
        if legs:
            return legs
        amount = self.settled.get(original.id, original.amount) or 0
        owner = original.to_user_id or original.to_account or refund.destination()
        return (Leg(owner, amount),)

    def _exchange(self, txn: Proposal) -> Judgement:
        """Sell `amount` of one asset for `to_amount` of another, through @exchange."""
        assert txn.amount is not None and txn.to_amount is not None
        wallet_key, sold_key, bought_key, buyer_key = txn.account_keys()
        wallet, buyer = self.account(wallet_key), self.account(buyer_key)
        sold, bought = self.account(sold_key), self.account(bought_key)
        _check_open(wallet, buyer)
        _check_spendable(wallet, txn.amount)
        _check_limits(wallet, sold, txn.amount)
        _check_limits(bought, buyer, txn.to_amount)
        lines = (
            _book(wallet, -txn.amount),
            _book(sold, txn.amount),
            _book(bought, -txn.to_amount),
            _book(buyer, txn.to_amount),
        )
        return Judgement(TransactionStatus.APPLIED, lines=lines)

    def _journal(self, txn: Proposal) -> Judgement:
        """Postings applied together: each wallet a posting debits is judged once, on where
        all the postings leave it (frozen, closed, available funds, the ceiling)."""
        postings = txn.postings or ()
        pairs = [
            (
                self.account((txn.tenant_id, p.asset_code, p.source)),
                self.account((txn.tenant_id, p.asset_code, p.target)),
                p,
            )
            for p in postings
        ]
        net: dict[int, int] = {}
        debited: dict[int, AccountState] = {}
        for source, target, posting in pairs:
            _check_open(source, target)
            net[source.id] = net.get(source.id, 0) - posting.amount
            net[target.id] = net.get(target.id, 0) + posting.amount
            debited[source.id] = source
        for _, target, _ in pairs:
            if not target.is_system and abs(target.balance + net[target.id]) > MAX_AMOUNT:
                raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED, f"wallet {target.owner}")
        for account in debited.values():
            if account.is_system:
                continue
            if account.status == AccountStatus.FROZEN:
                raise Rejected(RejectionCode.WALLET_FROZEN, f"wallet {account.owner}")
            if net[account.id] < 0 and account.available() + net[account.id] < 0:
                raise Rejected(RejectionCode.INSUFFICIENT_FUNDS, f"wallet {account.owner}")
            if account.balance + net[account.id] < -MAX_AMOUNT:
                raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED, f"wallet {account.owner}")
        # Credits first: a wallet's balance then only falls to where it ends, so no line
        # shows it below the floor its final balance respects (invariant 4, line by line).
        lines = [_book(target, posting.amount) for _, target, posting in pairs]
        lines += [_book(source, -posting.amount) for source, _, posting in pairs]
        return Judgement(TransactionStatus.APPLIED, lines=tuple(lines))

    def _settle(self, hold: HoldState, status: HoldStatus, **outcome: Any) -> None:
        hold.status = status
        hold.released_at = self.now
        for name, value in outcome.items():
            setattr(hold, name, value)
        hold.changed = True


def _check_legs(legs: tuple[Leg, ...], amount: int) -> None:
    """Legs as intake lets them through (ledger/request_legs.py), checked again where a
    wrong shape would unbalance the entries: some legs, each owner once, summing to amount."""
    owners = {leg.owner for leg in legs}
    if not legs or len(owners) != len(legs) or sum(leg.amount for leg in legs) != amount:
        raise Rejected(RejectionCode.INVALID_SPLITS, "legs do not sum to the amount")


def _check_open(*accounts: AccountState) -> None:
    for account in accounts:
        if not account.is_system and account.status == AccountStatus.CLOSED:
            raise Rejected(RejectionCode.WALLET_CLOSED)


def _check_spendable(debit: AccountState, amount: int) -> None:
    if not debit.is_system:
        if debit.status == AccountStatus.FROZEN:
            raise Rejected(RejectionCode.WALLET_FROZEN)
        if debit.available() < amount:
            raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)


def _check_limits(debit: AccountState, credit: AccountState, amount: int) -> None:
    """A wallet stays within ±MAX_AMOUNT; a system account has no ceiling, or one busy
    asset would block every wallet's top-ups once @topup had taken in enough."""
    if (not credit.is_system and credit.balance + amount > MAX_AMOUNT) or (
        not debit.is_system and debit.balance - amount < -MAX_AMOUNT
    ):
        raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)


def _book(account: AccountState, amount: int) -> Line:
    account.balance += amount
    account.version += 1
    account.touched = True
    return Line(account, amount, account.balance, account.version)


def _reserve(account: AccountState, amount: int, *, bump: bool = True) -> None:
    """Move `amount` into (or, negative, out of) the account's pending holds."""
    account.pending += amount
    if bump:  # a capture's journal line bumps the version already
        account.version += 1
    account.touched = True
