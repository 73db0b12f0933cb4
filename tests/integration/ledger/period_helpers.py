"""Backdated transactions for ledger-time tests, and a stand-in for intake's closed-period
check, until intake takes `effective_at` on this branch.

A backdated submission is recorded as intake records any (ledger/intake.py), then given its
`effective_at` in the same transaction; the real posting engine then writes its entries at
that effective time, keeping balances, versions and checkpoints as it always does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from ledger.db import UnitOfWork, unit_of_work
from ledger.errors import InvalidRequest
from ledger.intake import accept_transaction
from ledger.transaction_request import TransactionRequest
from tests.integration.ledger.helpers import apply

# intake's protocol with the close (ledger/periods.py): the shared lock, in its own statement.
SHARED_CLOSE_LOCK = text(
    "SELECT pg_advisory_xact_lock_shared("
    "hashtextextended('tally-close:' || CAST(:tenant_id AS text), 0))"
)
CLOSED_THROUGH = text("SELECT closed_through FROM tenants WHERE id = :tenant_id")
SET_EFFECTIVE_AT = text("UPDATE transactions SET effective_at = :at WHERE id = :id")


def accept_backdated(
    work: UnitOfWork, tenant_id: uuid.UUID, type: str, effective_at: datetime, **fields: Any
) -> uuid.UUID:
    """Record a queued submission effective at `effective_at`, checking the closed period
    as intake does: shared lock, then `closed_through`."""
    conn = work.connection
    conn.execute(SHARED_CLOSE_LOCK, {"tenant_id": tenant_id})
    closed_through = conn.execute(CLOSED_THROUGH, {"tenant_id": tenant_id}).scalar_one()
    if closed_through is not None and effective_at <= closed_through:
        raise InvalidRequest("period_closed", "the period is closed", field="effective_at")
    fields.setdefault("reference_id", uuid.uuid4().hex)
    fields.setdefault("asset_code", "EUR")
    request = TransactionRequest(type=type, **fields).validated()
    submission = accept_transaction(work, tenant_id, request, admin=True)
    conn.execute(SET_EFFECTIVE_AT, {"at": effective_at, "id": submission.id})
    return submission.id


def submit_backdated(
    engine: Engine, tenant_id: uuid.UUID, type: str, effective_at: datetime, **fields: Any
) -> uuid.UUID:
    with unit_of_work(engine) as work:
        return accept_backdated(work, tenant_id, type, effective_at, **fields)


def run_backdated(
    engine: Engine, tenant_id: uuid.UUID, type: str, effective_at: datetime, **fields: Any
) -> uuid.UUID:
    """Submit a backdated transaction and apply it; its id."""
    transaction_id = submit_backdated(engine, tenant_id, type, effective_at, **fields)
    outcome = apply(engine, transaction_id).outcomes
    assert [o.status for o in outcome] == ["applied"], outcome
    return transaction_id
