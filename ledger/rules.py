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
from ledger.money import MAX_AMOUNT
from ledger.vocabulary import (
    AccountStatus,
    HoldStatus,
    SystemAccount,
    TransactionStatus,
    TransactionType,
)

# Which system account sits on the other side of a wallet, per type (transfers have none).
SYSTEM_ACCOUNT_OF: dict[TransactionType, SystemAccount] = {
    TransactionType.TOPUP: SystemAccount.TOPUP,
    TransactionType.BONUS: SystemAccount.BONUS,
    TransactionType.SPEND: SystemAccount.REVENUE,
    TransactionType.REFUND: SystemAccount.REVENUE,
    TransactionType.ADJUSTMENT: SystemAccount.ADJUSTMENTS,
}

AccountKey = tuple[uuid.UUID, str, str]
"""(tenant_id, asset_code, owner): how a transaction names an account."""


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
    touched: bool = False

    def available(self) -> int:
        return available_balance(self.balance, self.pending, self.credit_limit)


@dataclass(frozen=True)
class Proposal:
    """What the rules need to know of one transaction.

    A capture or void carries its hold's wallet (intake copies it); one naming no hold of
    its tenant carries none.
    """

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    asset_code: str | None
    amount: int | None
    user_id: str | None
    to_user_id: str | None = None
    original_transaction_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    seq: int = 0

    def account_keys(self) -> list[AccountKey]:
        """The accounts this transaction moves money (or reserves funds) between."""
        if self.user_id is None or self.asset_code is None:
            return []
        wallet = (self.tenant_id, self.asset_code, self.user_id)
        kind = TransactionType(self.type)
        if kind == TransactionType.VOID:
            return [wallet]
        if kind == TransactionType.TRANSFER:
            other = str(self.to_user_id)
        elif kind in (TransactionType.HOLD, TransactionType.CAPTURE, TransactionType.REFUND):
            # A refund of a capture that paid a wallet takes the money back from it.
            other = self.to_user_id or SYSTEM_ACCOUNT_OF.get(kind, SystemAccount.REVENUE)
        else:
            other = SYSTEM_ACCOUNT_OF[kind]
        return [wallet, (self.tenant_id, self.asset_code, str(other))]


@dataclass(frozen=True)
class Original:
    """The earlier transaction a refund, capture or void names, as it was recorded."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    status: str
    user_id: str | None
    asset_code: str | None
    amount: int | None


@dataclass
class HoldState:
    """A hold as a book sees it: its state moves here before it is written."""

    transaction_id: uuid.UUID
    tenant_id: uuid.UUID
    seq: int
    account_id: int
    destination_account_id: int
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
    or changed, and the amount a capture or void settled on), or rejected."""

    status: TransactionStatus
    code: RejectionCode | None = None
    lines: tuple[Line, ...] = ()
    hold: HoldState | None = None
    amount: int | None = None


class Rejected(Exception):
    """A business rule said no; carries the stable code."""

    def __init__(self, code: RejectionCode) -> None:
        super().__init__(code.value)
        self.code = code


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

    def judge(self, txn: Proposal) -> Judgement:
        """Apply `txn` to the book's accounts and holds, or reject it having changed nothing."""
        try:
            if txn.type == TransactionType.HOLD:
                judgement = self._hold(txn)
            elif txn.type == TransactionType.CAPTURE:
                judgement = self._capture(txn)
            elif txn.type == TransactionType.VOID:
                judgement = self._void(txn)
            else:
                judgement = self._move(txn)
        except Rejected as rejection:
            judgement = Judgement(TransactionStatus.REJECTED, rejection.code)
        self.judged[txn.id] = judgement.status
        if judgement.amount is not None:
            self.settled[txn.id] = judgement.amount
        return judgement

    def account(self, key: AccountKey) -> AccountState:
        state = self.accounts.get(key)
        if state is None:
            raise Rejected(RejectionCode.WALLET_NOT_FOUND)
        return state

    def _move(self, txn: Proposal) -> Judgement:
        """Money between a wallet and another account: every type but the hold family."""
        assert txn.amount is not None  # the request checks it for these types
        wallet_key, other_key = txn.account_keys()
        wallet, other = self.account(wallet_key), self.account(other_key)
        amount = abs(txn.amount)
        debit, credit = other, wallet
        if txn.type == TransactionType.TRANSFER:
            if other.id == wallet.id:
                raise Rejected(RejectionCode.SAME_WALLET)
            debit, credit = wallet, other
        elif txn.type == TransactionType.SPEND or (
            txn.type == TransactionType.ADJUSTMENT and txn.amount < 0
        ):
            debit, credit = wallet, other
        elif txn.type == TransactionType.REFUND:
            self._check_refund(txn)
        self._check_open(debit, credit)
        self._check_spendable(debit, amount)
        self._check_limits(debit, credit, amount)
        if txn.type == TransactionType.REFUND:
            original_id = txn.original_transaction_id
            assert original_id is not None  # a refund names its original (the request checks)
            self.refunded[original_id] = self.refunded.get(original_id, 0) + amount
        return Judgement(
            TransactionStatus.APPLIED,
            lines=(self._book(debit, -amount), self._book(credit, amount)),
        )

    def _hold(self, txn: Proposal) -> Judgement:
        """Reserve funds: the wallet's pending grows; no money moves yet."""
        assert txn.amount is not None and txn.expires_at is not None  # checked at intake
        wallet_key, destination_key = txn.account_keys()
        wallet, destination = self.account(wallet_key), self.account(destination_key)
        if destination.id == wallet.id:
            raise Rejected(RejectionCode.SAME_WALLET)
        self._check_open(wallet, destination)
        self._check_spendable(wallet, txn.amount)
        if wallet.pending + txn.amount > MAX_AMOUNT:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)
        self._reserve(wallet, txn.amount)
        hold = HoldState(
            transaction_id=txn.id,
            tenant_id=txn.tenant_id,
            seq=txn.seq,
            account_id=wallet.id,
            destination_account_id=destination.id,
            amount=txn.amount,
            status=HoldStatus.HELD,
            expires_at=txn.expires_at,
            is_new=True,
            changed=True,
        )
        self.holds[txn.id] = hold
        return Judgement(TransactionStatus.APPLIED, hold=hold)

    def _capture(self, txn: Proposal) -> Judgement:
        """Move all or part of a hold to its destination; the rest is released."""
        hold = self._active_hold(txn)
        amount = hold.amount if txn.amount is None else txn.amount
        if amount > hold.amount:
            raise Rejected(RejectionCode.CAPTURE_EXCEEDS_HOLD)
        wallet_key, destination_key = txn.account_keys()
        wallet, destination = self.account(wallet_key), self.account(destination_key)
        if (wallet.id, destination.id) != (hold.account_id, hold.destination_account_id):
            raise Rejected(RejectionCode.HOLD_NOT_FOUND)
        self._check_open(wallet, destination)
        # The funds were reserved, but a frozen wallet is never debited: the hold stays held
        # until it is voided, expires, or the wallet is unfrozen.
        if wallet.status == AccountStatus.FROZEN:
            raise Rejected(RejectionCode.WALLET_FROZEN)
        if wallet.balance - amount < -wallet.credit_limit:
            raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)
        self._check_limits(wallet, destination, amount)
        self._reserve(wallet, -hold.amount, bump=False)
        lines = (self._book(wallet, -amount), self._book(destination, amount))
        self._settle(hold, HoldStatus.CAPTURED, captured_amount=amount, captured_by=txn.id)
        return Judgement(TransactionStatus.APPLIED, lines=lines, hold=hold, amount=amount)

    def _void(self, txn: Proposal) -> Judgement:
        """Release a hold whole: the wallet's pending drops by the held amount."""
        hold = self._active_hold(txn)
        (wallet_key,) = txn.account_keys()
        wallet = self.account(wallet_key)
        if wallet.id != hold.account_id:
            raise Rejected(RejectionCode.HOLD_NOT_FOUND)
        self._reserve(wallet, -hold.amount)
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

    def _check_refund(self, txn: Proposal) -> None:
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

    @staticmethod
    def _check_open(*accounts: AccountState) -> None:
        for account in accounts:
            if not account.is_system and account.status == AccountStatus.CLOSED:
                raise Rejected(RejectionCode.WALLET_CLOSED)

    @staticmethod
    def _check_spendable(debit: AccountState, amount: int) -> None:
        if not debit.is_system:
            if debit.status == AccountStatus.FROZEN:
                raise Rejected(RejectionCode.WALLET_FROZEN)
            if debit.available() < amount:
                raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)

    @staticmethod
    def _check_limits(debit: AccountState, credit: AccountState, amount: int) -> None:
        """A wallet stays within ±MAX_AMOUNT; a system account has no ceiling, or one busy
        asset would block every wallet's top-ups once @topup had taken in enough."""
        if (not credit.is_system and credit.balance + amount > MAX_AMOUNT) or (
            not debit.is_system and debit.balance - amount < -MAX_AMOUNT
        ):
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)

    @staticmethod
    def _book(account: AccountState, amount: int) -> Line:
        account.balance += amount
        account.version += 1
        account.touched = True
        return Line(account, amount, account.balance, account.version)

    @staticmethod
    def _reserve(account: AccountState, amount: int, *, bump: bool = True) -> None:
        """Move `amount` into (or, negative, out of) the account's pending holds."""
        account.pending += amount
        if bump:  # a capture's journal line bumps the version already
            account.version += 1
        account.touched = True

    def _settle(self, hold: HoldState, status: HoldStatus, **outcome: Any) -> None:
        hold.status = status
        hold.released_at = self.now
        for name, value in outcome.items():
            setattr(hold, name, value)
        hold.changed = True
