"""The posting rules: judging transactions against account states, in memory.

No SQL and no I/O: the posting engine loads and locks the accounts a batch touches, hands
them to a `Book`, and writes back what the book decided. Tests run the same rules with no
database at all. A book judges transactions one after another, each against the balances
its predecessors left; a rejection changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from ledger.codes import RejectionCode
from ledger.vocabulary import (
    AccountStatus,
    SystemAccount,
    TransactionStatus,
    TransactionType,
)

# Stored balances are 64-bit; keep clear of the edge so sums over a few accounts cannot wrap.
MAX_BALANCE = 2**62

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


RowT = TypeVar("RowT", "AccountState", "Proposal", "Original")


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
    """What the rules need to know of one transaction."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    asset_code: str
    amount: int
    user_id: str
    to_user_id: str | None = None
    original_transaction_id: uuid.UUID | None = None

    def account_keys(self) -> list[AccountKey]:
        """The two accounts this transaction moves money between."""
        other = (
            self.to_user_id
            if self.type == TransactionType.TRANSFER
            else SYSTEM_ACCOUNT_OF[TransactionType(self.type)]
        )
        return [
            (self.tenant_id, self.asset_code, self.user_id),
            (self.tenant_id, self.asset_code, str(other)),
        ]


@dataclass(frozen=True)
class Original:
    """The earlier transaction a refund names, as it was recorded."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    status: str
    user_id: str
    asset_code: str
    amount: int


@dataclass(frozen=True)
class Line:
    """One journal line a judgement writes: the account, the signed amount, and after."""

    account: AccountState
    amount: int
    balance_after: int
    version: int


@dataclass(frozen=True)
class Judgement:
    """The outcome of one transaction: applied with its journal lines, or rejected."""

    status: TransactionStatus
    code: RejectionCode | None = None
    lines: tuple[Line, ...] = ()


class Rejected(Exception):
    """A business rule said no; carries the stable code."""

    def __init__(self, code: RejectionCode) -> None:
        super().__init__(code.value)
        self.code = code


@dataclass
class Book:
    """The accounts of one batch and what it knows of refunded spends; judges in order."""

    accounts: dict[AccountKey, AccountState]
    originals: dict[uuid.UUID, Original] = field(default_factory=dict)
    refunded: dict[uuid.UUID, int] = field(default_factory=dict)
    # Outcomes judged by this book: a refund may name a spend judged earlier in it.
    judged: dict[uuid.UUID, TransactionStatus] = field(default_factory=dict)

    def judge(self, txn: Proposal) -> Judgement:
        """Apply `txn` to the book's accounts, or reject it having changed nothing."""
        try:
            debit, credit, amount = self._legs(txn)
            self._check_move(debit, credit, amount)
        except Rejected as rejection:
            judgement = Judgement(TransactionStatus.REJECTED, rejection.code)
        else:
            judgement = Judgement(
                TransactionStatus.APPLIED,
                lines=(self._book(debit, -amount), self._book(credit, amount)),
            )
            if txn.type == TransactionType.REFUND:
                original_id = txn.original_transaction_id
                assert original_id is not None  # a refund names its spend (the request checks)
                self.refunded[original_id] = self.refunded.get(original_id, 0) + amount
        self.judged[txn.id] = judgement.status
        return judgement

    def account(self, key: AccountKey) -> AccountState:
        state = self.accounts.get(key)
        if state is None:
            raise Rejected(RejectionCode.WALLET_NOT_FOUND)
        return state

    def _legs(self, txn: Proposal) -> tuple[AccountState, AccountState, int]:
        """(debited account, credited account, positive amount), or Rejected."""
        wallet_key, other_key = txn.account_keys()
        wallet, other = self.account(wallet_key), self.account(other_key)
        if txn.type == TransactionType.TRANSFER:
            if other.id == wallet.id:
                raise Rejected(RejectionCode.SAME_WALLET)
            return wallet, other, txn.amount
        if txn.type == TransactionType.SPEND or (
            txn.type == TransactionType.ADJUSTMENT and txn.amount < 0
        ):
            return wallet, other, abs(txn.amount)
        if txn.type == TransactionType.REFUND:
            self._check_refund(txn)
        return other, wallet, txn.amount

    def _check_refund(self, txn: Proposal) -> None:
        original_id = txn.original_transaction_id
        original = self.originals.get(original_id) if original_id is not None else None
        if (
            original is None
            or original.tenant_id != txn.tenant_id
            or original.type != TransactionType.SPEND
        ):
            raise Rejected(RejectionCode.ORIGINAL_NOT_FOUND)
        if self.judged.get(original.id, original.status) != TransactionStatus.APPLIED:
            raise Rejected(RejectionCode.ORIGINAL_NOT_APPLIED)
        if original.user_id != txn.user_id or original.asset_code != txn.asset_code:
            raise Rejected(RejectionCode.ORIGINAL_MISMATCH)
        if self.refunded.get(original.id, 0) + txn.amount > original.amount:
            raise Rejected(RejectionCode.REFUND_EXCEEDS_ORIGINAL)

    @staticmethod
    def _check_move(debit: AccountState, credit: AccountState, amount: int) -> None:
        for account in (debit, credit):
            if not account.is_system and account.status == AccountStatus.CLOSED:
                raise Rejected(RejectionCode.WALLET_CLOSED)
        if not debit.is_system:
            if debit.status == AccountStatus.FROZEN:
                raise Rejected(RejectionCode.WALLET_FROZEN)
            if debit.available() < amount:
                raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)
        if credit.balance + amount > MAX_BALANCE or debit.balance - amount < -MAX_BALANCE:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)

    @staticmethod
    def _book(account: AccountState, amount: int) -> Line:
        account.balance += amount
        account.version += 1
        account.touched = True
        return Line(account, amount, account.balance, account.version)
