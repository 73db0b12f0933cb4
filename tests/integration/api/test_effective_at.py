"""A submission's `effective_at` through HTTP: backdating inside and outside the window,
the future, closed periods; entries keep both times; checkpoints stay exact
(docs/api.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from ledger.audit import OPERATOR
from ledger.checkpoints import CHECKPOINT_EVERY
from ledger.db import unit_of_work
from ledger.intake import accept_transactions
from ledger.ledger_time import balance_as_of
from ledger.periods import close_period
from ledger.posting import post_transactions
from ledger.transaction_request import TransactionRequest
from tests.integration.api.conftest import Api


def topup(api: Api, **fields: Any) -> Any:
    body = {"user_id": "alice", "asset_code": "EUR", "amount": 100, **fields}
    body.setdefault("reference_id", uuid.uuid4().hex)
    return api.post("/wallets/topup", body)


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def entry_times(api: Api, transaction_id: str) -> set[tuple[datetime, datetime]]:
    with api.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT effective_at, created_at FROM entries WHERE transaction_id = :id"),
            {"id": transaction_id},
        )
        return {(effective, recorded) for effective, recorded in rows}


def test_a_backdated_submission_counts_from_its_effective_time_and_is_recorded_now(api: Api):
    effective = ago(days=3).replace(microsecond=0)
    accepted = topup(api, effective_at=effective.isoformat())
    assert accepted.status_code == 202
    assert datetime.fromisoformat(accepted.get_json()["effective_at"]) == effective
    post_transactions(api.engine, [uuid.UUID(accepted.get_json()["id"])])
    shown = api.get(f"/transactions/{accepted.get_json()['id']}").get_json()
    assert shown["status"] == "applied"
    assert datetime.fromisoformat(shown["effective_at"]) == effective

    ((entry_effective, recorded),) = entry_times(api, accepted.get_json()["id"])
    assert entry_effective == effective
    assert recorded > ago(minutes=1)
    plain = topup(api)
    assert "effective_at" not in plain.get_json()
    post_transactions(api.engine, [uuid.UUID(plain.get_json()["id"])])
    ((plain_effective, plain_recorded),) = entry_times(api, plain.get_json()["id"])
    assert plain_effective == plain_recorded


def test_effective_times_outside_the_window_are_refused_with_their_codes(api: Api):
    cases = {
        "effective_at_in_future": (datetime.now(UTC) + timedelta(seconds=120)).isoformat(),
        "effective_at_too_old": ago(days=31).isoformat(),
        "validation_failed": "2026-12-01T10:00:00",  # no offset
    }
    for code, when in cases.items():
        answer = topup(api, effective_at=when)
        assert (answer.status_code, answer.get_json()["code"]) == (422, code), when
    assert (
        topup(api, effective_at=(datetime.now(UTC) + timedelta(seconds=30)).isoformat()).status_code
        == 202
    )
    assert topup(api, effective_at=ago(days=29).isoformat()).status_code == 202


def test_a_closed_period_refuses_what_would_land_in_it(api: Api):
    closed = ago(days=2)
    with unit_of_work(api.engine) as work:
        close_period(work, api.tenant.id, closed, actor=OPERATOR)

    inside = topup(api, effective_at=closed.isoformat())
    after = topup(api, effective_at=(closed + timedelta(seconds=1)).isoformat())

    assert (inside.status_code, inside.get_json()["code"]) == (422, "period_closed")
    assert after.status_code == 202
    assert topup(api).status_code == 202  # no effective_at: counts from its application


def test_the_same_body_replays_and_another_effective_time_is_another_request(api: Api):
    body = {"reference_id": uuid.uuid4().hex, "effective_at": ago(hours=5).isoformat()}
    first = topup(api, **body)
    again = topup(api, **body)
    moved = topup(api, **{**body, "effective_at": ago(hours=6).isoformat()})

    assert (first.status_code, again.status_code) == (202, 200)
    assert (moved.status_code, moved.get_json()["code"]) == (409, "idempotency_key_reused")


def _applied_topups(api: Api, count: int, effective_at: datetime | None = None) -> None:
    requests = [
        TransactionRequest(
            "topup",
            uuid.uuid4().hex,
            user_id="busy",
            asset_code="EUR",
            amount=1,
            effective_at=effective_at,
        )
        for _ in range(count)
    ]
    with unit_of_work(api.engine) as work:
        accepted = accept_transactions(work, api.tenant.id, requests, admin=True)
    post_transactions(api.engine, [result.id for result in accepted])  # type: ignore[union-attr]


def test_checkpoints_bound_as_of_reads_and_a_backdated_entry_drops_those_after_it(api: Api):
    before = datetime.now(UTC)
    _applied_topups(api, CHECKPOINT_EVERY + 5)
    with api.engine.connect() as conn:
        account_id = conn.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND owner = 'busy'"),
            {"t": api.tenant.id},
        ).scalar_one()
        checkpoints = conn.execute(
            text("SELECT effective_through, balance FROM balance_snapshots WHERE account_id = :a"),
            {"a": account_id},
        ).all()
    assert len(checkpoints) == 1
    ((_, balance),) = checkpoints
    # Taken by the batch that passed version 1,000, at its time: all it had written.
    assert balance == CHECKPOINT_EVERY + 5

    _applied_topups(api, 1, effective_at=before - timedelta(hours=1))

    with api.engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM balance_snapshots WHERE account_id = :a"),
            {"a": account_id},
        ).scalar_one()
        assert left == 0
        assert balance_as_of(conn, account_id, before - timedelta(minutes=30)) == 1
        assert balance_as_of(conn, account_id, datetime.now(UTC)) == CHECKPOINT_EVERY + 6
        assert balance_as_of(conn, account_id, datetime.now(UTC), known_at=before) == 0
