"""The posting engine: applies queued transactions to the double-entry ledger.

A call claims a batch of queued transactions and applies them in one PostgreSQL
transaction. Each transaction is still judged on its own, in acceptance order (`seq`),
against the balances its predecessors in the batch left: a rejection writes nothing and
never undoes a neighbour. A batch of one is the one-at-a-time path; both share every rule.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.codes import REJECTION_MESSAGES, FailureCode, RejectionCode
from ledger.db import RETRYABLE_SQLSTATES, sqlstate
from ledger.events import record_transaction_events
from ledger.queries import available_balance
from ledger.transaction_request import MAX_BALANCE
from ledger.views import transaction_view

log = logging.getLogger(__name__)

# Batches cannot deadlock each other (accounts are locked in ascending id order), but a
# path that locks in another order, or a stricter isolation level configured on the server,
# can still make PostgreSQL abort us with 40P01/40001: a few retries suffice.
MAX_CONFLICT_RETRIES = 8
MAX_ERROR_LENGTH = 500

CLAIM_GIVEN = text(
    """
    SELECT * FROM transactions
    WHERE id = ANY(:ids) AND status = 'queued' AND next_attempt_at <= now()
    FOR UPDATE SKIP LOCKED
    """
)
# SKIP LOCKED: a row another worker is applying is that worker's; never wait for it.
CLAIM_OLDEST = text(
    """
    SELECT * FROM transactions
    WHERE status = 'queued' AND next_attempt_at <= now() AND NOT id = ANY(:ids)
    ORDER BY seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
# Ascending id order is the global lock order: two batches can never wait on each other
# in a cycle. LockRows sits above the Sort, so rows are locked in this order.
LOCK_ACCOUNTS = text(
    """
    SELECT a.* FROM accounts a
    JOIN unnest(CAST(:tenant_ids AS uuid[]), CAST(:assets AS text[]), CAST(:owners AS text[]))
      AS k(tenant_id, asset_code, owner)
      ON a.tenant_id = k.tenant_id AND a.asset_code = k.asset_code AND a.owner = k.owner
    ORDER BY a.id
    FOR UPDATE OF a
    """
)
ORIGINALS = text(
    """
    SELECT id, tenant_id, type, status, user_id, asset_code, amount
    FROM transactions WHERE id = ANY(:ids)
    """
)
REFUNDED = text(
    """
    SELECT original_transaction_id, sum(amount) AS refunded
    FROM transactions
    WHERE original_transaction_id = ANY(:ids) AND status = 'applied'
    GROUP BY original_transaction_id
    """
)
# The batch's journal lines, balances and outcomes in one statement (one round trip):
# every part is computed in Python, none reads what another writes.
WRITE_BATCH = text(
    """
    WITH new_entries AS (
        INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                             account_version, created_at)
        SELECT e.tenant_id, e.transaction_id, e.account_id, e.amount, e.balance_after,
               e.account_version, :now
        FROM unnest(CAST(:entry_tenant_ids AS uuid[]), CAST(:entry_transaction_ids AS uuid[]),
                    CAST(:entry_account_ids AS bigint[]), CAST(:entry_amounts AS bigint[]),
                    CAST(:entry_balances AS bigint[]), CAST(:entry_versions AS bigint[]))
          AS e(tenant_id, transaction_id, account_id, amount, balance_after, account_version)
    ), moved_accounts AS (
        UPDATE accounts a SET balance = v.balance, version = v.version, updated_at = :now
        FROM unnest(CAST(:account_ids AS bigint[]), CAST(:account_balances AS bigint[]),
                    CAST(:account_versions AS bigint[]))
          AS v(id, balance, version)
        WHERE a.id = v.id
    )
    UPDATE transactions t
    SET status = v.status, result_code = v.code, result_message = v.message,
        completed_at = :now, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]),
                CAST(:messages AS text[]))
      AS v(id, status, code, message)
    WHERE t.id = v.id
    """
)


@dataclass
class AccountState:
    """A locked account as the batch sees it: balances move here before they are written."""

    id: int
    owner: str
    is_system: bool
    status: str
    credit_limit: int
    balance: int
    pending: int
    version: int
    touched: bool = False

    @classmethod
    def from_row(cls, row: RowMapping) -> AccountState:
        return cls(
            id=row["id"],
            owner=row["owner"],
            is_system=row["is_system"],
            status=row["status"],
            credit_limit=row["credit_limit"],
            balance=row["balance"],
            pending=row["pending"],
            version=row["version"],
        )

    def available(self) -> int:
        return available_balance(self.balance, self.pending, self.credit_limit)


@dataclass(frozen=True)
class Outcome:
    """What happened to one transaction of a batch."""

    transaction_id: uuid.UUID
    type: str
    status: str
    code: str | None = None


@dataclass
class BatchResult:
    """Outcomes in application order, and the asked-for ids that were not queued for us."""

    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[uuid.UUID] = field(default_factory=list)

    def status_of(self, transaction_id: uuid.UUID) -> str | None:
        for outcome in self.outcomes:
            if outcome.transaction_id == transaction_id:
                return outcome.status
        return None


class Rejected(Exception):
    """A business rule said no; carries the stable code."""

    def __init__(self, code: RejectionCode) -> None:
        super().__init__(code.value)
        self.code = code


AccountKey = tuple[uuid.UUID, str, str]


def _system_account(txn: RowMapping) -> str:
    return {
        "topup": "@topup",
        "bonus": "@bonus",
        "spend": "@revenue",
        "refund": "@revenue",
        "adjustment": "@adjustments",
    }[txn["type"]]


def _account_keys(txn: RowMapping) -> list[AccountKey]:
    tenant, asset = txn["tenant_id"], txn["asset_code"]
    keys = [(tenant, asset, txn["user_id"])]
    if txn["type"] == "transfer":
        keys.append((tenant, asset, txn["to_user_id"]))
    else:
        keys.append((tenant, asset, _system_account(txn)))
    return keys


class _Batch:
    """One batch's working state: locked accounts, refund bookkeeping, and pending writes."""

    def __init__(self, conn: Connection, txns: list[RowMapping]) -> None:
        self.conn = conn
        self.txns = txns
        self.now = conn.execute(text("SELECT now()")).scalar_one()
        keys = sorted({key for txn in txns for key in _account_keys(txn)})
        rows = conn.execute(
            LOCK_ACCOUNTS,
            {
                "tenant_ids": [k[0] for k in keys],
                "assets": [k[1] for k in keys],
                "owners": [k[2] for k in keys],
            },
        ).mappings()
        self.accounts: dict[AccountKey, AccountState] = {
            (row["tenant_id"], row["asset_code"], row["owner"]): AccountState.from_row(row)
            for row in rows
        }
        # Read only after the wallet locks are held: every refund of a spend locks that
        # spend's wallet, so these sums cannot move under us.
        original_ids = [t["original_transaction_id"] for t in txns if t["type"] == "refund"]
        self.originals: dict[uuid.UUID, RowMapping] = {}
        self.refunded: dict[uuid.UUID, int] = {}
        if original_ids:
            for row in conn.execute(ORIGINALS, {"ids": original_ids}).mappings():
                self.originals[row["id"]] = row
            for original_id, refunded in conn.execute(REFUNDED, {"ids": original_ids}):
                self.refunded[original_id] = int(refunded)
        self.status_in_batch: dict[uuid.UUID, str] = {}
        self.entries: list[tuple[uuid.UUID, uuid.UUID, AccountState, int]] = []

    def account(self, txn: RowMapping, owner: str) -> AccountState:
        state = self.accounts.get((txn["tenant_id"], txn["asset_code"], owner))
        if state is None:
            raise Rejected(RejectionCode.WALLET_NOT_FOUND)
        return state

    def post(self, txn: RowMapping) -> None:
        """Move the money of one transaction, or raise Rejected having changed nothing."""
        kind, amount = txn["type"], txn["amount"]
        wallet = self.account(txn, txn["user_id"])
        if kind == "transfer":
            target = self.account(txn, txn["to_user_id"])
            if target.id == wallet.id:
                raise Rejected(RejectionCode.SAME_WALLET)
            self._move(txn, debit=wallet, credit=target, amount=amount)
            return
        system = self.account(txn, _system_account(txn))
        if kind == "spend" or (kind == "adjustment" and amount < 0):
            self._move(txn, debit=wallet, credit=system, amount=abs(amount))
            return
        if kind == "refund":
            self._check_refund(txn)
        self._move(txn, debit=system, credit=wallet, amount=amount)
        if kind == "refund":
            original_id = txn["original_transaction_id"]
            self.refunded[original_id] = self.refunded.get(original_id, 0) + amount

    def _check_refund(self, txn: RowMapping) -> None:
        original = self.originals.get(txn["original_transaction_id"])
        if (
            original is None
            or original["tenant_id"] != txn["tenant_id"]
            or original["type"] != "spend"
        ):
            raise Rejected(RejectionCode.ORIGINAL_NOT_FOUND)
        status = self.status_in_batch.get(original["id"], original["status"])
        if status != "applied":
            raise Rejected(RejectionCode.ORIGINAL_NOT_APPLIED)
        if original["user_id"] != txn["user_id"] or original["asset_code"] != txn["asset_code"]:
            raise Rejected(RejectionCode.ORIGINAL_MISMATCH)
        already = self.refunded.get(original["id"], 0)
        if already + txn["amount"] > original["amount"]:
            raise Rejected(RejectionCode.REFUND_EXCEEDS_ORIGINAL)

    def _move(
        self, txn: RowMapping, *, debit: AccountState, credit: AccountState, amount: int
    ) -> None:
        for account in (debit, credit):
            if not account.is_system and account.status == "closed":
                raise Rejected(RejectionCode.WALLET_CLOSED)
        if not debit.is_system:
            if debit.status == "frozen":
                raise Rejected(RejectionCode.WALLET_FROZEN)
            if debit.available() < amount:
                raise Rejected(RejectionCode.INSUFFICIENT_FUNDS)
        if credit.balance + amount > MAX_BALANCE or debit.balance - amount < -MAX_BALANCE:
            raise Rejected(RejectionCode.BALANCE_LIMIT_EXCEEDED)
        for account, delta in ((debit, -amount), (credit, amount)):
            account.balance += delta
            account.version += 1
            account.touched = True
            self.entries.append((txn["tenant_id"], txn["id"], account, delta))

    def apply_all(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        finished: list[tuple[uuid.UUID, dict[str, Any]]] = []
        entry_rows: list[tuple[uuid.UUID, uuid.UUID, int, int, int, int]] = []
        for txn in self.txns:
            first_entry = len(self.entries)
            try:
                self.post(txn)
            except Rejected as rejection:
                del self.entries[first_entry:]
                outcome = Outcome(txn["id"], txn["type"], "rejected", rejection.code.value)
            else:
                outcome = Outcome(txn["id"], txn["type"], "applied")
            # Snapshot balances now: a later transaction in the batch moves them again.
            after: dict[str, int] = {}
            for tenant_id, txn_id, account, delta in self.entries[first_entry:]:
                entry_rows.append(
                    (tenant_id, txn_id, account.id, delta, account.balance, account.version)
                )
                if not account.is_system:
                    after[account.owner] = account.balance
            self.status_in_batch[txn["id"]] = outcome.status
            outcomes.append(outcome)
            finished.append((txn["tenant_id"], self._view(txn, outcome, after)))
        self._write(entry_rows, outcomes, finished)
        return outcomes

    def _view(self, txn: RowMapping, outcome: Outcome, after: dict[str, int]) -> dict[str, Any]:
        row = dict(txn)
        row.update(
            status=outcome.status,
            result_code=outcome.code,
            result_message=REJECTION_MESSAGES[RejectionCode(outcome.code)]
            if outcome.code
            else None,
            completed_at=self.now,
        )
        return transaction_view(row, after)

    def _write(
        self,
        entry_rows: list[tuple[uuid.UUID, uuid.UUID, int, int, int, int]],
        outcomes: list[Outcome],
        finished: list[tuple[uuid.UUID, dict[str, Any]]],
    ) -> None:
        conn = self.conn
        columns = list(zip(*entry_rows, strict=True)) or [()] * 6
        touched = [a for a in self.accounts.values() if a.touched]
        conn.execute(
            WRITE_BATCH,
            {
                "now": self.now,
                "entry_tenant_ids": list(columns[0]),
                "entry_transaction_ids": list(columns[1]),
                "entry_account_ids": list(columns[2]),
                "entry_amounts": list(columns[3]),
                "entry_balances": list(columns[4]),
                "entry_versions": list(columns[5]),
                "account_ids": [a.id for a in touched],
                "account_balances": [a.balance for a in touched],
                "account_versions": [a.version for a in touched],
                "ids": [o.transaction_id for o in outcomes],
                "statuses": [o.status for o in outcomes],
                "codes": [o.code for o in outcomes],
                "messages": [
                    REJECTION_MESSAGES[RejectionCode(o.code)] if o.code else None for o in outcomes
                ],
            },
        )
        record_transaction_events(conn, self.now, finished)


def apply_claimed(conn: Connection, ids: Sequence[uuid.UUID], fill_to: int = 0) -> BatchResult:
    """Within the caller's transaction: claim the queued ones of `ids` (plus the oldest
    queued others, up to `fill_to` in all) and apply them in acceptance order."""
    given = list(dict.fromkeys(ids))
    claimed = list(conn.execute(CLAIM_GIVEN, {"ids": given}).mappings())
    if fill_to > len(claimed):
        claimed += conn.execute(
            CLAIM_OLDEST, {"ids": given, "limit": fill_to - len(claimed)}
        ).mappings()
    claimed_ids = {row["id"] for row in claimed}
    result = BatchResult(skipped=[i for i in given if i not in claimed_ids])
    if claimed:
        claimed.sort(key=lambda row: row["seq"])
        result.outcomes = _Batch(conn, claimed).apply_all()
    return result


def _retrying(engine: Engine, ids: Sequence[uuid.UUID], fill_to: int) -> BatchResult:
    for attempt in range(MAX_CONFLICT_RETRIES):
        try:
            with engine.begin() as conn:
                return apply_claimed(conn, ids, fill_to)
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == MAX_CONFLICT_RETRIES - 1:
                raise
            log.info("retrying batch after %s (attempt %d)", sqlstate(error), attempt + 1)
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def post_transactions(
    engine: Engine, ids: Iterable[uuid.UUID], *, fill_to: int = 0, max_attempts: int = 5
) -> BatchResult:
    """Apply the given queued transactions (and up to `fill_to` in all), one commit per batch.

    Transactions that are no longer queued are skipped: redelivery is harmless. A system
    fault is retried on its own with backoff recorded in the row; after `max_attempts`
    the transaction is `failed`.
    """
    ids = list(ids)
    try:
        return _retrying(engine, ids, fill_to)
    except OperationalError:
        # The database is unreachable, restarting or cancelled the statement: not the
        # transactions' fault. Nothing was applied; the relay re-publishes them later.
        raise
    except Exception as error:
        log.exception("batch of %d failed; applying one at a time", max(len(ids), fill_to))
        if len(ids) == 1 and fill_to <= 1:
            return _record_failure(engine, ids[0], error, max_attempts)
    # Isolate the faulty transaction: every other one still gets applied. The rows the batch
    # topped itself up with are isolated too, or a faulty one would sink every later batch.
    suspects = list(ids)
    if fill_to > len(ids):
        with engine.connect() as conn:
            suspects += conn.execute(
                PEEK_OLDEST, {"ids": ids, "limit": fill_to - len(ids)}
            ).scalars()
    result = BatchResult()
    for one in suspects:
        single = post_transactions(engine, [one], max_attempts=max_attempts)
        result.outcomes += single.outcomes
        result.skipped += single.skipped
    return result


PEEK_OLDEST = text(
    """
    SELECT id FROM transactions
    WHERE status = 'queued' AND next_attempt_at <= now() AND NOT id = ANY(:ids)
    ORDER BY seq LIMIT :limit
    """
)
RECORD_ATTEMPT = text(
    """
    UPDATE transactions
    SET attempts = attempts + 1, last_error = :error, updated_at = now(),
        next_attempt_at = now() + make_interval(secs => least(power(2, attempts + 1), 300))
    WHERE id = :id AND status = 'queued'
    RETURNING attempts
    """
)
MARK_FAILED = text(
    """
    UPDATE transactions
    SET status = 'failed', result_code = :code, result_message = :error,
        completed_at = now(), updated_at = now()
    WHERE id = :id
    RETURNING *
    """
)


def _record_failure(
    engine: Engine, transaction_id: uuid.UUID, error: BaseException, max_attempts: int
) -> BatchResult:
    message = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
    with engine.begin() as conn:
        attempts = conn.execute(RECORD_ATTEMPT, {"id": transaction_id, "error": message}).scalar()
        if attempts is None:
            return BatchResult(skipped=[transaction_id])
        if attempts < max_attempts:
            return BatchResult(skipped=[transaction_id])
        row = (
            conn.execute(
                MARK_FAILED,
                {
                    "id": transaction_id,
                    "code": FailureCode.PROCESSING_FAILED.value,
                    "error": message,
                },
            )
            .mappings()
            .one()
        )
        now = conn.execute(text("SELECT now()")).scalar_one()
        record_transaction_events(conn, now, [(row["tenant_id"], transaction_view(row, {}))])
    return BatchResult(
        outcomes=[
            Outcome(transaction_id, row["type"], "failed", FailureCode.PROCESSING_FAILED.value)
        ]
    )


def requeue_failed(conn: Connection, tenant_id: uuid.UUID, transaction_id: uuid.UUID) -> bool:
    """Re-queue a failed transaction (an operator's decision); True if it was failed."""
    updated = conn.execute(
        text(
            """
            UPDATE transactions
            SET status = 'queued', result_code = NULL, result_message = NULL, attempts = 0,
                completed_at = NULL, next_attempt_at = now(), updated_at = now()
            WHERE tenant_id = :tenant_id AND id = :id AND status = 'failed'
            """
        ),
        {"tenant_id": tenant_id, "id": transaction_id},
    )
    return updated.rowcount == 1
