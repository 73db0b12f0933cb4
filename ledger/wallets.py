"""Wallet administration: freeze, unfreeze, close, reopen and credit limits, audited."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ledger import audit
from ledger.audit import OPERATOR, Actor
from ledger.db import UnitOfWork
from ledger.errors import InvalidRequest, WalletClosed, WalletNotFound
from ledger.money import MAX_AMOUNT
from ledger.vocabulary import AccountStatus


def freeze_wallet(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    actor: Actor,
    reason: str | None = None,
) -> None:
    """Freeze a wallet: debits are rejected `wallet_frozen`, credits still land. A closed
    wallet is refused `wallet_closed`."""
    update_wallet(
        work,
        tenant_id,
        user_id,
        asset_code,
        actor=actor,
        reason=reason,
        status=AccountStatus.FROZEN,
        reopen=False,
    )


def unfreeze_wallet(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    actor: Actor,
    reason: str | None = None,
) -> None:
    """Make a frozen wallet active again; a closed wallet is refused `wallet_closed`."""
    update_wallet(
        work,
        tenant_id,
        user_id,
        asset_code,
        actor=actor,
        reason=reason,
        status=AccountStatus.ACTIVE,
        reopen=False,
    )


def update_wallet(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    actor: Actor = OPERATOR,
    status: str | None = None,
    credit_limit: int | None = None,
    reopen: bool = True,
    reason: str | None = None,
) -> None:
    """Freeze, unfreeze, close a wallet or set its credit limit; bumps its version and
    records who did it, and why, in the audit trail.

    With `reopen=False` (freeze and unfreeze) a closed wallet is refused `wallet_closed`:
    only an admin's explicit status change takes a wallet out of `closed`.
    """
    if status is not None and status not in list(AccountStatus):
        raise InvalidRequest(
            "invalid_status", f"status must be one of {', '.join(AccountStatus)}", field="status"
        )
    if credit_limit is not None and (
        isinstance(credit_limit, bool)
        or not isinstance(credit_limit, int)
        or not 0 <= credit_limit <= MAX_AMOUNT
    ):
        raise InvalidRequest(
            "invalid_credit_limit", f"credit_limit must be 0..{MAX_AMOUNT}", field="credit_limit"
        )
    conn = work.connection
    params = {
        "t": tenant_id,
        "a": asset_code,
        "o": user_id,
        "status": status,
        "credit_limit": credit_limit,
        "reopen": reopen,
    }
    try:
        with conn.begin_nested():
            changed = conn.execute(UPDATE_WALLET, params).mappings().first()
    except IntegrityError as error:
        if isinstance(error.orig, pg_errors.CheckViolation):
            raise InvalidRequest(
                "credit_limit_below_balance",
                "the wallet's balance is below the new credit limit",
                field="credit_limit",
            ) from None
        raise
    if changed is None:
        exists = conn.execute(
            text(
                "SELECT status FROM accounts WHERE tenant_id = :t AND asset_code = :a"
                " AND owner = :o AND NOT is_system"
            ),
            params,
        ).scalar()
        if exists == AccountStatus.CLOSED:
            raise WalletClosed(f"the {asset_code} wallet of {user_id!r} is closed")
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    target = f"wallet:{user_id}/{asset_code}"
    details: dict[str, Any] = {"reason": reason} if reason else {}
    if changed["old_status"] != changed["status"]:
        action = STATUS_ACTIONS[(changed["old_status"], changed["status"])]
        audit.append_event(conn, tenant_id, actor, action, target, details)
    if changed["old_credit_limit"] != changed["credit_limit"]:
        audit.append_event(
            conn,
            tenant_id,
            actor,
            "wallet.credit_limit_changed",
            target,
            {**details, "before": changed["old_credit_limit"], "after": changed["credit_limit"]},
        )


# (status before, status after) -> the audit action.
STATUS_ACTIONS = {
    (AccountStatus.ACTIVE, AccountStatus.FROZEN): "wallet.frozen",
    (AccountStatus.FROZEN, AccountStatus.ACTIVE): "wallet.unfrozen",
    (AccountStatus.ACTIVE, AccountStatus.CLOSED): "wallet.closed",
    (AccountStatus.FROZEN, AccountStatus.CLOSED): "wallet.closed",
    (AccountStatus.CLOSED, AccountStatus.ACTIVE): "wallet.reopened",
    (AccountStatus.CLOSED, AccountStatus.FROZEN): "wallet.reopened",
}

UPDATE_WALLET = text(
    """
    UPDATE accounts AS a
    SET status = coalesce(CAST(:status AS text), a.status),
        credit_limit = coalesce(CAST(:credit_limit AS numeric), a.credit_limit),
        version = a.version + 1, updated_at = now()
    FROM (
        SELECT id, status, credit_limit FROM accounts
        WHERE tenant_id = :t AND asset_code = :a AND owner = :o AND NOT is_system
          AND (:reopen OR status <> 'closed')
        FOR UPDATE
    ) AS old
    WHERE a.id = old.id
    RETURNING old.status AS old_status, old.credit_limit AS old_credit_limit,
              a.status, a.credit_limit
    """
)
