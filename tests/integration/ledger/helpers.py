"""Helpers for ledger tests: submit and apply through the real engine."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Engine, text

from ledger.db import unit_of_work
from ledger.intake import Submission, accept_transaction
from ledger.posting import BatchResult, post_transactions
from ledger.queries import get_balance, get_transaction
from ledger.transaction_request import TransactionRequest


def submit(engine: Engine, tenant_id: uuid.UUID, type: str, **fields: Any) -> Submission:
    fields.setdefault("reference_id", uuid.uuid4().hex)
    if type not in ("capture", "void", "journal"):  # no asset of their own
        fields.setdefault("asset_code", "EUR")
    request = TransactionRequest(type=type, **fields).validated()
    with unit_of_work(engine) as work:
        return accept_transaction(work, tenant_id, request, admin=True)


def apply(engine: Engine, *ids: uuid.UUID) -> BatchResult:
    return post_transactions(engine, ids)


def run(engine: Engine, tenant_id: uuid.UUID, type: str, **fields: Any) -> dict[str, Any]:
    """Submit one transaction, apply it, and return its status view."""
    submission = submit(engine, tenant_id, type, **fields)
    apply(engine, submission.id)
    return status(engine, tenant_id, submission.id)


def status(engine: Engine, tenant_id: uuid.UUID, transaction_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work(engine) as work:
        view = get_transaction(work.connection, tenant_id, transaction_id=transaction_id)
    assert view is not None
    return view


def balance(engine: Engine, tenant_id: uuid.UUID, user_id: str, asset: str = "EUR") -> int:
    with unit_of_work(engine) as work:
        return int(get_balance(work.connection, tenant_id, user_id, asset)["balance"])


def someone_waits_for(engine: Engine, conn: Connection) -> bool:
    """Whether another backend is blocked on a lock `conn` holds."""
    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as probe:
        waiting = probe.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        ).scalar_one()
    return bool(waiting)
