"""The queue of record: transactions waiting in PostgreSQL to be applied, and putting them
back on the broker. A failed transaction is re-queued by an operator's decision; one left
`queued` too long (a publish lost after its commit, a broker that lost a message, a worker
killed holding one) is re-published by the relay."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import text

from ledger import audit
from ledger.audit import Actor
from ledger.db import UnitOfWork
from ledger.errors import TransactionNotFailed, TransactionNotFound
from ledger.queries import get_transaction

log = logging.getLogger(__name__)

REQUEUE_FAILED = text(
    """
    UPDATE transactions
    SET status = 'queued', result_code = NULL, result_message = NULL, attempts = 0,
        completed_at = NULL, next_attempt_at = now(), updated_at = now()
    WHERE tenant_id = :tenant_id AND id = :id AND status = 'failed'
    """
)
# Bumping updated_at marks the row as just published: the next scan leaves it alone for
# another `age` seconds. SKIP LOCKED passes over rows a worker is applying right now.
CLAIM_STALE = text(
    """
    UPDATE transactions SET publish_count = publish_count + 1, updated_at = now()
    WHERE id IN (
        SELECT id FROM transactions
        WHERE status = 'queued' AND next_attempt_at <= now()
          AND updated_at < now() - make_interval(secs => :age)
        ORDER BY seq
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)


def requeue_transaction(
    work: UnitOfWork, tenant_id: uuid.UUID, transaction_id: uuid.UUID, *, actor: Actor
) -> dict[str, Any]:
    """Put a failed transaction back in the queue (audited) and publish it once committed;
    the transaction as it is now. TransactionNotFound outside the tenant,
    TransactionNotFailed unless it is failed."""
    conn = work.connection
    updated = conn.execute(REQUEUE_FAILED, {"tenant_id": tenant_id, "id": transaction_id})
    if updated.rowcount != 1:
        view = get_transaction(conn, tenant_id, transaction_id=transaction_id)
        if view is None:
            raise TransactionNotFound(f"no transaction {transaction_id}")
        raise TransactionNotFailed(
            f"the transaction is {view['status']}; only a failed one can be requeued"
        )
    audit.append_event(
        conn, tenant_id, actor, "transaction.requeued", f"transaction:{transaction_id}"
    )
    work.publish([str(transaction_id)])
    view = get_transaction(conn, tenant_id, transaction_id=transaction_id)
    assert view is not None
    return view


def republish_stale_transactions(work: UnitOfWork, age_seconds: float, limit: int = 5000) -> int:
    """Claim the transactions queued for longer than `age_seconds` (at most `limit`) and
    publish them once committed; how many."""
    ids = [
        str(i)
        for i in work.connection.execute(
            CLAIM_STALE, {"age": age_seconds, "limit": limit}
        ).scalars()
    ]
    if ids:
        log.info("re-publishing %d stale queued transactions", len(ids))
    work.publish(ids)
    return len(ids)
