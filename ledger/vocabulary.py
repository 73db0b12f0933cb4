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


class SystemAccount(StrEnum):
    """The per-tenant, per-asset accounts money enters, leaves and is adjusted through."""

    TOPUP = "@topup"
    BONUS = "@bonus"
    REVENUE = "@revenue"
    ADJUSTMENTS = "@adjustments"


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
