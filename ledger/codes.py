"""Stable result codes of the ledger; clients match on these strings."""

from __future__ import annotations

from enum import StrEnum


class RejectionCode(StrEnum):
    """Why a transaction was rejected: a business rule, final."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    WALLET_FROZEN = "wallet_frozen"
    WALLET_CLOSED = "wallet_closed"
    WALLET_NOT_FOUND = "wallet_not_found"
    ORIGINAL_NOT_FOUND = "original_not_found"
    ORIGINAL_NOT_APPLIED = "original_not_applied"
    ORIGINAL_MISMATCH = "original_mismatch"
    REFUND_EXCEEDS_ORIGINAL = "refund_exceeds_original"
    SAME_WALLET = "same_wallet"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"
    HOLD_NOT_FOUND = "hold_not_found"
    HOLD_NOT_ACTIVE = "hold_not_active"
    HOLD_EXPIRED = "hold_expired"
    CAPTURE_EXCEEDS_HOLD = "capture_exceeds_hold"
    INVALID_SPLITS = "invalid_splits"


class FailureCode(StrEnum):
    """Why a transaction could not be processed: a system fault, re-queueable."""

    PROCESSING_FAILED = "processing_failed"


REJECTION_MESSAGES: dict[RejectionCode, str] = {
    RejectionCode.INSUFFICIENT_FUNDS: "The wallet's available funds are less than the amount.",
    RejectionCode.WALLET_FROZEN: "The wallet is frozen: it cannot be debited.",
    RejectionCode.WALLET_CLOSED: "The wallet is closed.",
    RejectionCode.WALLET_NOT_FOUND: "The wallet does not exist for this asset.",
    RejectionCode.ORIGINAL_NOT_FOUND: (
        "The original transaction is not a spend or capture of this tenant."
    ),
    RejectionCode.ORIGINAL_NOT_APPLIED: "The original transaction was not applied.",
    RejectionCode.ORIGINAL_MISMATCH: (
        "The original transaction belongs to another wallet or asset."
    ),
    RejectionCode.REFUND_EXCEEDS_ORIGINAL: (
        "Refunds would exceed the original transaction's amount."
    ),
    RejectionCode.SAME_WALLET: "A transfer needs two different wallets.",
    RejectionCode.BALANCE_LIMIT_EXCEEDED: "The resulting balance would exceed the ledger's limit.",
    RejectionCode.HOLD_NOT_FOUND: "The original transaction is not a hold of this tenant.",
    RejectionCode.HOLD_NOT_ACTIVE: (
        "The hold is not active: not applied yet, or already captured or voided."
    ),
    RejectionCode.HOLD_EXPIRED: "The hold expired before this capture or void.",
    RejectionCode.CAPTURE_EXCEEDS_HOLD: "The capture's amount exceeds the held amount.",
    RejectionCode.INVALID_SPLITS: (
        "The legs do not fit: a refund's are not all legs of the original, or they do not"
        " sum to the amount."
    ),
}
