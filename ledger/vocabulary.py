"""The ledger's words: transaction types, statuses and account kinds, as one set of enums.

Schemas, table constraints and the posting rules all import these; nothing spells the
values out again. Each member is a `str`, so it compares equal to the text the database
stores and the JSON clients send.
"""

from __future__ import annotations

from enum import StrEnum


class TransactionType(StrEnum):
    TOPUP = "topup"
    BONUS = "bonus"
    SPEND = "spend"
    REFUND = "refund"
    TRANSFER = "transfer"
    ADJUSTMENT = "adjustment"
    HOLD = "hold"
    CAPTURE = "capture"
    VOID = "void"
    PAYOUT = "payout"
    EXCHANGE = "exchange"
    JOURNAL = "journal"


# Captures and voids name a hold; intake copies its wallet onto them.
HOLD_ACTIONS = frozenset({TransactionType.CAPTURE, TransactionType.VOID})


class TransactionStatus(StrEnum):
    QUEUED = "queued"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset(
    {TransactionStatus.APPLIED, TransactionStatus.REJECTED, TransactionStatus.FAILED}
)


class AccountStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class HoldStatus(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


class EventType(StrEnum):
    """What an outbox event announces; webhook endpoints subscribe to these."""

    TRANSACTION_APPLIED = "transaction.applied"
    TRANSACTION_REJECTED = "transaction.rejected"
    TRANSACTION_FAILED = "transaction.failed"
    HOLD_CAPTURED = "hold.captured"
    HOLD_VOIDED = "hold.voided"
    HOLD_EXPIRED = "hold.expired"


# Sent only when an operator asks for it; no endpoint subscribes to it.
WEBHOOK_TEST_EVENT = "webhook.test"
# The event each final status of a transaction writes to the outbox.
EVENT_FOR_STATUS = {
    TransactionStatus.APPLIED: EventType.TRANSACTION_APPLIED,
    TransactionStatus.REJECTED: EventType.TRANSACTION_REJECTED,
    TransactionStatus.FAILED: EventType.TRANSACTION_FAILED,
}


class DeliveryStatus(StrEnum):
    """A webhook delivery's state: waiting for `next_attempt_at`, leased to a dispatcher
    until then, or settled."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class SystemAccount(StrEnum):
    """The built-in per-tenant, per-asset accounts money enters, leaves, is adjusted and
    exchanged through. A tenant may define more (ledger/system_accounts.py); every system
    account's name matches SYSTEM_ACCOUNT_NAME."""

    TOPUP = "@topup"
    BONUS = "@bonus"
    REVENUE = "@revenue"
    ADJUSTMENTS = "@adjustments"
    PAYOUTS = "@payouts"
    EXCHANGE = "@exchange"


class Scope(StrEnum):
    """What an API key may do; each scope includes the ones below it (api/permissions.py)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


# What a system account may be called: `@` and 1-32 of [a-z0-9_]. User ids never start with
# `@`, so one owner column names both kinds of account.
SYSTEM_ACCOUNT_NAME = r"@[a-z0-9_]{1,32}"
