"""Errors the ledger raises to its callers; each carries a stable code."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger reports to a caller."""

    code = "ledger_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(LedgerError):
    """A request the ledger refuses before recording it."""

    code = "invalid_request"

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class Forbidden(LedgerError):
    """The caller's key may not do this."""

    code = "forbidden"


class AdminKeyRequired(Forbidden):
    code = "admin_key_required"


class NotFound(LedgerError):
    code = "not_found"


class AssetNotFound(NotFound):
    code = "asset_not_found"


class WalletNotFound(NotFound):
    code = "wallet_not_found"


class TenantNotFound(NotFound):
    code = "tenant_not_found"


class TransactionNotFound(NotFound):
    code = "transaction_not_found"


class SystemAccountNotFound(NotFound):
    """Neither a built-in system account nor one the tenant defined."""

    code = "system_account_not_found"


class Conflict(LedgerError):
    code = "conflict"


class WalletClosed(Conflict):
    """A closed wallet stays closed: only an admin's explicit status change reopens it."""

    code = "wallet_closed"


class IdempotencyKeyReused(Conflict):
    """The reference id was already used with a different request body."""

    code = "idempotency_key_reused"


class AssetAlreadyExists(Conflict):
    code = "asset_exists"


class SystemAccountExists(Conflict):
    """The name is a built-in system account's or one the tenant defined already."""

    code = "system_account_exists"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class InvalidCursor(LedgerError):
    code = "invalid_cursor"


class KeyRevoked(LedgerError):
    """The API key a request was accepted under was revoked meanwhile: nothing is recorded."""

    code = "invalid_api_key"


class TransactionNotFailed(Conflict):
    """Only a failed transaction can be put back in the queue."""

    code = "transaction_not_failed"
