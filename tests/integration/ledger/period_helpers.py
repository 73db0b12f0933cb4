"""Backdated transactions for ledger-time tests, through the real intake.

A backdated submission names its `effective_at` and goes through `accept_transaction` as
the API's would: the window and closed-period checks (ledger/intake.py) judge it, and the
real posting engine then writes its entries at that effective time, keeping balances,
versions and checkpoints as it always does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from ledger.db import UnitOfWork, unit_of_work
from ledger.intake import accept_transaction
from ledger.transaction_request import TransactionRequest
from tests.integration.ledger.helpers import apply


def accept_backdated(
    work: UnitOfWork, tenant_id: uuid.UUID, type: str, effective_at: datetime, **fields: Any
) -> uuid.UUID:
    """Record a queued submission effective at `effective_at`; intake's LedgerError
    (`period_closed`, `effective_at_too_old`, ...) is raised."""
    fields.setdefault("reference_id", uuid.uuid4().hex)
    fields.setdefault("asset_code", "EUR")
    request = TransactionRequest(type=type, effective_at=effective_at, **fields)
    return accept_transaction(work, tenant_id, request, admin=True).id


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
