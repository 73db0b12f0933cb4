"""The posting engine: applies queued transactions to the double-entry ledger.

A call claims a batch of queued transactions and applies them in one PostgreSQL
transaction. Each transaction is still judged on its own, in acceptance order (`seq`),
against the balances its predecessors in the batch left: a rejection writes nothing and
never undoes a neighbour. A batch of one is the one-at-a-time path; both share every rule.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text
from sqlalchemy.exc import OperationalError

from ledger.chains import chain_entries
from ledger.checkpoints import keep_checkpoints
from ledger.codes import REJECTION_MESSAGES, FailureCode, RejectionCode
from ledger.db import retry_on_conflict, unit_of_work
from ledger.events import write_transaction_events
from ledger.holds import write_hold_events, write_holds
from ledger.legs import legs_to_json
from ledger.posting_book import open_book
from ledger.rules import (
    AccountState,
    HoldState,
    Proposal,
    from_row,
)
from ledger.views import transaction_view
from ledger.vocabulary import (
    HOLD_ACTIONS,
    HoldStatus,
    TransactionStatus,
    TransactionType,
)
from ledger.wallet_order import in_wallet_order

log = logging.getLogger(__name__)

# Types whose legs are settled when they are applied: a partial capture of a split hold pays
# each leg pro rata, and a refund takes back from the legs the rules chose.
RESOLVES_LEGS = frozenset({TransactionType.CAPTURE, TransactionType.REFUND})

# Batches cannot deadlock each other (accounts are locked in ascending id order), but a
# path that locks in another order, or a stricter isolation level configured on the server,
# can still make PostgreSQL abort us with 40P01/40001: a few retries suffice.
MAX_CONFLICT_RETRIES = 8
CONFLICT_BACKOFF_SECONDS = 0.005
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
    WHERE status = 'queued' AND next_attempt_at <= now() AND NOT id = ANY(CAST(:ids AS uuid[]))
    ORDER BY seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
# The close lock (ledger/periods.py takes it exclusively; intake, for backdated requests,
# shared): a close waits for the batches writing in its tenant, and a batch after it runs
# on a time after it.
SHARE_CLOSE_LOCKS = text(
    """
    SELECT pg_advisory_xact_lock_shared(hashtextextended('tally-close:' || t, 0))
    FROM unnest(CAST(:tenant_ids AS text[])) AS t ORDER BY t
    """
)
# The batch's journal lines, balances and outcomes in one statement (one round trip):
# every part is computed in Python, none reads what another writes.
WRITE_BATCH = text(
    """
    WITH new_entries AS (
        INSERT INTO entries (tenant_id, transaction_id, account_id, amount, balance_after,
                             account_version, created_at, effective_at, hash)
        SELECT e.tenant_id, e.transaction_id, e.account_id, e.amount, e.balance_after,
               e.account_version, :now, coalesce(e.effective_at, :now), e.hash
        FROM unnest(CAST(:entry_tenant_ids AS uuid[]), CAST(:entry_transaction_ids AS uuid[]),
                    CAST(:entry_account_ids AS bigint[]), CAST(:entry_amounts AS numeric[]),
                    CAST(:entry_balances AS numeric[]), CAST(:entry_versions AS bigint[]),
                    CAST(:entry_effective_ats AS timestamptz[]), CAST(:entry_hashes AS bytea[]))
          AS e(tenant_id, transaction_id, account_id, amount, balance_after, account_version,
               effective_at, hash)
    ), moved_accounts AS (
        UPDATE accounts a
        SET balance = v.balance, pending = v.pending, version = v.version,
            last_hash = v.last_hash, updated_at = :now
        FROM unnest(CAST(:account_ids AS bigint[]), CAST(:account_balances AS numeric[]),
                    CAST(:account_pendings AS numeric[]), CAST(:account_versions AS bigint[]),
                    CAST(:account_hashes AS bytea[]))
          AS v(id, balance, pending, version, last_hash)
        WHERE a.id = v.id
    )
    UPDATE transactions t
    SET status = v.status, result_code = v.code, result_message = v.message,
        amount = coalesce(v.amount, t.amount), splits = coalesce(v.splits, t.splits),
        completed_at = :now, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]),
                CAST(:messages AS text[]), CAST(:amounts AS numeric[]), CAST(:splits AS jsonb[]))
      AS v(id, status, code, message, amount, splits)
    WHERE t.id = v.id
    """
)


@dataclass(frozen=True)
class Outcome:
    """What happened to one transaction of a batch."""

    transaction_id: uuid.UUID
    type: str
    status: str
    code: str | None = None
    # What the rejection concerned (the leg of a refund that could not give its part back).
    detail: str | None = None
    # The legs a capture paid or a refund took back, as applied (JSON), or None.
    legs: str | None = None

    @property
    def message(self) -> str | None:
        if not self.code:
            return None
        message = REJECTION_MESSAGES[RejectionCode(self.code)]
        return f"{message} ({self.detail})" if self.detail else message


@dataclass
class BatchResult:
    """Outcomes in application order, and the asked-for ids that were not queued for us."""

    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[uuid.UUID] = field(default_factory=list)
    # Claimed but left queued: an earlier transaction on one of their wallets was elsewhere.
    deferred: list[uuid.UUID] = field(default_factory=list)

    def status_of(self, transaction_id: uuid.UUID) -> str | None:
        for outcome in self.outcomes:
            if outcome.transaction_id == transaction_id:
                return outcome.status
        return None


# tenant, transaction, account, amount, balance after, version, effective at (None: now).
EntryRow = tuple[uuid.UUID, uuid.UUID, int, int, int, int, datetime | None]


def _apply_batch(conn: Connection, txns: list[RowMapping]) -> list[Outcome]:
    """Judge the claimed rows in order against their locked accounts; write it all at once."""
    proposals = [from_row(Proposal, txn) for txn in txns]
    tenants = sorted({str(proposal.tenant_id) for proposal in proposals})
    conn.execute(SHARE_CLOSE_LOCKS, {"tenant_ids": tenants})
    heads: dict[int, bytes | None] = {}
    book = open_book(conn, None, proposals, heads)
    # The batch's time is read once its locks are held, not when its transaction began: a
    # batch that waited for an account never writes entries older than the checkpoint the
    # batch before it wrote there, nor older than a close that committed meanwhile.
    now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    book.now = now
    versions_before = {account.id: account.version for account in book.accounts.values()}
    settled: list[int | None] = []
    released: list[tuple[HoldStatus, HoldState]] = []
    outcomes: list[Outcome] = []
    finished: list[tuple[uuid.UUID, dict[str, Any]]] = []
    entry_rows: list[EntryRow] = []
    for txn, proposal in zip(txns, proposals, strict=True):
        judgement = book.judge(proposal)
        legs = None
        if judgement.legs is not None and proposal.type in RESOLVES_LEGS:
            legs = json.dumps(legs_to_json(judgement.legs))
        outcome = Outcome(
            proposal.id, proposal.type, judgement.status, judgement.code, judgement.detail, legs
        )
        # Balances as this transaction left them: a later one in the batch moves them again.
        after: dict[tuple[str, str], int] = {}
        sequences: dict[tuple[str, str], int] = {}
        for line in judgement.lines:
            entry_rows.append(
                (
                    proposal.tenant_id,
                    proposal.id,
                    line.account.id,
                    line.amount,
                    line.balance_after,
                    line.version,
                    txn["effective_at"],
                )
            )
            if not line.account.is_system:
                after[(line.account.asset_code, line.account.owner)] = line.balance_after
                sequences[(line.account.asset_code, line.account.owner)] = line.version
        outcomes.append(outcome)
        settled.append(judgement.amount)
        hold = judgement.hold
        if hold is not None and proposal.type in HOLD_ACTIONS:
            released.append((HoldStatus(hold.status), replace(hold)))
        row = dict(txn)
        row.update(
            status=outcome.status,
            result_code=outcome.code,
            result_message=outcome.message,
            completed_at=now,
            amount=judgement.amount or txn["amount"],
        )
        if judgement.legs is not None and proposal.type in RESOLVES_LEGS:
            row["splits"] = legs_to_json(judgement.legs)
        held = asdict(hold) if hold is not None and proposal.type == TransactionType.HOLD else None
        finished.append((proposal.tenant_id, transaction_view(row, after, held, sequences)))
    touched = [account for account in book.accounts.values() if account.touched]
    # Each entry chained to its account's previous one (ledger/chains.py): the heads were
    # read with the account locks, so no other batch can chain onto them meanwhile.
    hashes = chain_entries(heads, entry_rows, now)
    _write(conn, now, entry_rows, hashes, heads, touched, outcomes, settled)
    keep_checkpoints(conn, now, entry_rows, touched, versions_before)
    write_holds(conn, now, [hold for hold in book.holds.values() if hold.changed])
    write_transaction_events(conn, now, finished)
    write_hold_events(conn, now, [(status, asdict(hold)) for status, hold in released])
    return outcomes


def _write(
    conn: Connection,
    now: Any,
    entry_rows: list[EntryRow],
    hashes: list[bytes],
    heads: dict[int, bytes | None],
    touched: list[AccountState],
    outcomes: list[Outcome],
    settled: list[int | None],
) -> None:
    columns = list(zip(*entry_rows, strict=True)) or [()] * 7
    conn.execute(
        WRITE_BATCH,
        {
            "now": now,
            "entry_tenant_ids": list(columns[0]),
            "entry_transaction_ids": list(columns[1]),
            "entry_account_ids": list(columns[2]),
            "entry_amounts": list(columns[3]),
            "entry_balances": list(columns[4]),
            "entry_versions": list(columns[5]),
            "entry_effective_ats": list(columns[6]),
            "entry_hashes": hashes,
            "account_ids": [a.id for a in touched],
            "account_balances": [a.balance for a in touched],
            "account_pendings": [a.pending for a in touched],
            "account_versions": [a.version for a in touched],
            "account_hashes": [heads.get(a.id) for a in touched],
            "ids": [o.transaction_id for o in outcomes],
            "statuses": [str(o.status) for o in outcomes],
            "codes": [str(o.code) if o.code else None for o in outcomes],
            "messages": [o.message for o in outcomes],
            "amounts": settled,
            "splits": [o.legs for o in outcomes],
        },
    )


def apply_claimed(
    conn: Connection, ids: Sequence[uuid.UUID], fill_to: int = 0, *, in_order: bool = False
) -> BatchResult:
    """Within the caller's transaction: claim the queued ones of `ids` (plus the oldest
    queued others, up to `fill_to` in all) and apply them in acceptance order.

    `in_order` (the workers): claim the `fill_to` oldest queued rows, `ids` being only the
    wake-up, and leave queued (`deferred`) any transaction whose wallet has an earlier
    queued transaction this batch does not hold, so that per wallet, transactions apply
    in the order they were accepted even when several workers claim at once.
    """
    given = list(dict.fromkeys(ids))
    if in_order:
        claimed = list(conn.execute(CLAIM_OLDEST, {"ids": [], "limit": fill_to}).mappings())
    else:
        claimed = list(conn.execute(CLAIM_GIVEN, {"ids": given}).mappings())
        if fill_to > len(claimed):
            claimed += conn.execute(
                CLAIM_OLDEST, {"ids": given, "limit": fill_to - len(claimed)}
            ).mappings()
    claimed_ids = {row["id"] for row in claimed}
    result = BatchResult(skipped=[i for i in given if i not in claimed_ids])
    claimed.sort(key=lambda row: row["seq"])
    if in_order and claimed:
        claimed, waiting = in_wallet_order(conn, claimed)
        result.deferred = [row["id"] for row in waiting]
    if claimed:
        result.outcomes = _apply_batch(conn, claimed)
    return result


def _retrying(
    engine: Engine, ids: Sequence[uuid.UUID], fill_to: int, in_order: bool
) -> BatchResult:
    def attempt() -> BatchResult:
        with unit_of_work(engine) as work:
            return apply_claimed(work.connection, ids, fill_to, in_order=in_order)

    return retry_on_conflict(
        attempt, attempts=MAX_CONFLICT_RETRIES, backoff=CONFLICT_BACKOFF_SECONDS
    )


def post_transactions(
    engine: Engine,
    ids: Iterable[uuid.UUID],
    *,
    fill_to: int = 0,
    max_attempts: int = 5,
    in_order: bool = False,
) -> BatchResult:
    """Apply the given queued transactions (and up to `fill_to` in all), one commit per batch.

    Transactions that are no longer queued are skipped: redelivery is harmless. A system
    fault is retried on its own with backoff recorded in the row; after `max_attempts`
    the transaction is `failed`.
    """
    ids = list(ids)
    try:
        return _retrying(engine, ids, fill_to, in_order)
    except OperationalError:
        # The database is unreachable, restarting or cancelled the statement: not the
        # transactions' fault. Nothing was applied; the relay re-publishes them later.
        raise
    except Exception as error:
        log.exception("batch of %d failed; applying one at a time", max(len(ids), fill_to))
        if len(ids) == 1 and fill_to <= 1:
            return _count_failed_attempt(engine, ids[0], error, max_attempts)
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


def _count_failed_attempt(
    engine: Engine, transaction_id: uuid.UUID, error: BaseException, max_attempts: int
) -> BatchResult:
    message = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
    with unit_of_work(engine) as work:
        conn = work.connection
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
        write_transaction_events(conn, now, [(row["tenant_id"], transaction_view(row, {}))])
    return BatchResult(
        outcomes=[
            Outcome(
                transaction_id,
                row["type"],
                TransactionStatus.FAILED,
                FailureCode.PROCESSING_FAILED.value,
            )
        ]
    )
