"""What the posting rules need to know of a transaction (`Proposal`) and of the earlier
transaction it names (`Original`): plain records, built from rows or by tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from ledger.legs import Leg, Posting, legs_from_json, postings_from_json
from ledger.vocabulary import SystemAccount, TransactionType

# Which system account sits on the other side of a wallet, per type (transfers have none).
SYSTEM_ACCOUNT_OF: dict[TransactionType, SystemAccount] = {
    TransactionType.TOPUP: SystemAccount.TOPUP,
    TransactionType.BONUS: SystemAccount.BONUS,
    TransactionType.SPEND: SystemAccount.REVENUE,
    TransactionType.REFUND: SystemAccount.REVENUE,
    TransactionType.ADJUSTMENT: SystemAccount.ADJUSTMENTS,
    TransactionType.PAYOUT: SystemAccount.PAYOUTS,
}

AccountKey = tuple[uuid.UUID, str, str]
"""(tenant_id, asset_code, owner): how a transaction names an account."""


@dataclass(frozen=True)
class Proposal:
    """What the rules need to know of one transaction.

    A capture or void carries its hold's wallet (intake copies it, and a capture the hold's
    destination or legs unless it names its own); one naming no hold of its tenant carries
    none. Legs and postings may be given as their JSON (a row's `splits` and `postings`).
    A refund's `original_legs` are the destinations of the transaction it refunds, which the
    posting engine looks up before it locks their accounts.
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
    splits: tuple[Leg, ...] | None = None
    to_account: str | None = None
    to_asset_code: str | None = None
    to_amount: int | None = None
    postings: tuple[Posting, ...] | None = None
    original_legs: tuple[Leg, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.splits, list):
            object.__setattr__(self, "splits", legs_from_json(self.splits))
        if isinstance(self.postings, list):
            object.__setattr__(self, "postings", postings_from_json(self.postings))

    def destination(self) -> str:
        """The one account a hold, capture, spend, payout or top-up moves money to or from,
        beside the wallet: a wallet, a named system account, or the type's built-in."""
        kind = TransactionType(self.type)
        if kind in (TransactionType.HOLD, TransactionType.CAPTURE, TransactionType.REFUND):
            # A refund of a capture that paid a wallet takes the money back from it.
            return self.to_user_id or self.to_account or SystemAccount.REVENUE
        if kind == TransactionType.TRANSFER:
            return str(self.to_user_id)
        return SYSTEM_ACCOUNT_OF[kind]

    def account_keys(self) -> list[AccountKey]:
        """The accounts this transaction moves money (or reserves funds) between."""
        kind = TransactionType(self.type)
        if kind == TransactionType.JOURNAL:
            return [
                (self.tenant_id, posting.asset_code, owner)
                for posting in self.postings or ()
                for owner in (posting.source, posting.target)
            ]
        if self.user_id is None or self.asset_code is None:
            return []
        wallet = (self.tenant_id, self.asset_code, self.user_id)
        if kind == TransactionType.VOID:
            return [wallet]
        if kind == TransactionType.EXCHANGE:
            bought = str(self.to_asset_code)
            return [
                wallet,
                (self.tenant_id, self.asset_code, SystemAccount.EXCHANGE),
                (self.tenant_id, bought, SystemAccount.EXCHANGE),
                (self.tenant_id, bought, self.to_user_id or self.user_id),
            ]
        legs = self.original_legs if kind == TransactionType.REFUND else self.splits
        if legs:
            return [wallet, *((self.tenant_id, self.asset_code, leg.owner) for leg in legs)]
        return [wallet, (self.tenant_id, self.asset_code, self.destination())]


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
    to_user_id: str | None = None
    to_account: str | None = None
    splits: tuple[Leg, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.splits, list):
            object.__setattr__(self, "splits", legs_from_json(self.splits))
