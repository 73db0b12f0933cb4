"""Reads in ledger time against the real PostgreSQL: balances as of a moment and known at
another, across checkpoints, and statements, held to an oracle that sums the same rows in
Python."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from ledger.intake import accept_transactions
from ledger.ledger_time import balance_as_of, balance_through
from ledger.posting import post_transactions
from ledger.queries import get_balance_as_of, wallet_account_id
from ledger.statements import wallet_statement
from ledger.transaction_request import TransactionRequest
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import run
from tests.integration.ledger.time_helpers import database_now, post_backdated, topups

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return BASE + timedelta(minutes=n)


def test_a_backdated_entry_recorded_after_known_at_is_invisible_there(
    engine: Engine, tenant: TenantFixture
) -> None:
    run(engine, tenant.id, "topup", user_id="kim", amount=1000)
    known = database_now(engine)
    a_day_ago = known - timedelta(days=1)
    post_backdated(engine, tenant.id, a_day_ago, "topup", user_id="kim", amount=500)
    with engine.connect() as conn:

        def at(as_of: datetime, known_at: datetime | None = None) -> int:
            view = get_balance_as_of(conn, tenant.id, "kim", "EUR", as_of, known_at)
            return int(view["balance"])

        assert at(known) == 1500
        assert at(known, known) == 1000
        assert at(a_day_ago) == 500
        assert at(a_day_ago, known) == 0
        assert at(a_day_ago - timedelta(seconds=1)) == 0


def _oracle(conn: object, account_id: int, as_of: datetime, known_at: datetime | None) -> int:
    total = conn.execute(  # type: ignore[attr-defined]
        text(
            "SELECT coalesce(sum(amount), 0) FROM entries WHERE account_id = :id"
            " AND effective_at <= :t AND (CAST(:k AS timestamptz) IS NULL OR created_at <= :k)"
        ),
        {"id": account_id, "t": as_of, "k": known_at},
    ).scalar_one()
    return int(total)


def _checkpoints(conn: object, account_id: int) -> list[datetime]:
    return list(
        conn.execute(  # type: ignore[attr-defined]
            text(
                "SELECT effective_through FROM balance_snapshots"
                " WHERE account_id = :id AND kind = 'checkpoint' ORDER BY 1"
            ),
            {"id": account_id},
        ).scalars()
    )


def test_as_of_reads_across_a_checkpoint_and_after_a_backdated_entry_drops_it(
    engine: Engine, tenant: TenantFixture
) -> None:
    requests = [
        TransactionRequest(
            type="topup", user_id="lea", asset_code="EUR", amount=n, reference_id=uuid.uuid4().hex
        )
        for n in range(1, 1002)
    ]
    with unit_of_work(engine) as work:
        accepted = accept_transactions(work, tenant.id, requests, admin=True)
    before = database_now(engine)
    post_transactions(engine, [result.id for result in accepted])  # type: ignore[union-attr]
    after_checkpoint = database_now(engine)
    run(engine, tenant.id, "spend", user_id="lea", amount=7)
    with engine.connect() as conn:
        account = wallet_account_id(conn, tenant.id, "lea", "EUR")
        checkpoints = _checkpoints(conn, account)
    assert len(checkpoints) == 1 and before < checkpoints[0] < after_checkpoint

    backdated_at = before - timedelta(hours=1)
    known_before_backdating = database_now(engine)
    post_backdated(engine, tenant.id, backdated_at, "bonus", user_id="lea", amount=40)
    now = database_now(engine)
    moments = [backdated_at, before, checkpoints[0], after_checkpoint, now]
    with engine.connect() as conn:
        assert _checkpoints(conn, account) == []
        for as_of in moments:
            for known_at in (None, known_before_backdating, now):
                expected = _oracle(conn, account, as_of, known_at)
                assert balance_as_of(conn, account, as_of, known_at) == expected, (as_of, known_at)
    total = sum(range(1, 1002))
    with engine.connect() as conn:
        assert balance_as_of(conn, account, now) == total - 7 + 40
        assert balance_as_of(conn, account, now, known_before_backdating) == total - 7


def test_a_checkpoint_bounds_the_read_and_agrees_with_the_sum(
    engine: Engine, tenant: TenantFixture
) -> None:
    requests = [
        TransactionRequest(
            type="topup", user_id="max", asset_code="EUR", amount=3, reference_id=uuid.uuid4().hex
        )
        for _ in range(1000)
    ]
    with unit_of_work(engine) as work:
        accepted = accept_transactions(work, tenant.id, requests, admin=True)
    post_transactions(engine, [result.id for result in accepted])  # type: ignore[union-attr]
    run(engine, tenant.id, "topup", user_id="max", amount=5)
    now = database_now(engine)
    with engine.connect() as conn:
        account = wallet_account_id(conn, tenant.id, "max", "EUR")
        (checkpoint,) = _checkpoints(conn, account)
        snapshot = conn.execute(
            text("SELECT balance FROM balance_snapshots WHERE account_id = :id"), {"id": account}
        ).scalar_one()
        assert snapshot == 3000
        assert balance_as_of(conn, account, checkpoint) == 3000
        assert balance_as_of(conn, account, now) == 3005
        last = conn.execute(
            text(
                "SELECT effective_at, id FROM entries WHERE account_id = :id"
                " ORDER BY effective_at DESC, id DESC LIMIT 1"
            ),
            {"id": account},
        ).one()
        assert balance_through(conn, account, last.effective_at, last.id) == 3005


MOVES = st.lists(
    st.tuples(
        st.integers(-500, 1000).filter(bool),  # amount (a negative one: an adjustment)
        st.integers(0, 60),  # effective minute: collisions test the entry-id order
        st.integers(0, 60),  # recorded minute
    ),
    min_size=1,
    max_size=19,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    moves=MOVES,
    period=st.tuples(st.integers(-5, 65), st.integers(-5, 65)).filter(lambda p: p[0] < p[1]),
    probes=st.lists(st.tuples(st.integers(-5, 65), st.integers(-5, 65)), max_size=6),
    limit=st.integers(1, 7),
)
def test_statements_and_as_of_answers_match_an_oracle(
    engine: Engine,
    tenant: TenantFixture,
    moves: list[tuple[int, int, int]],
    period: tuple[int, int],
    probes: list[tuple[int, int]],
    limit: int,
) -> None:
    user = f"p-{uuid.uuid4().hex[:10]}"
    # A first top-up of 10,000 keeps every balance in insertion order at or above zero.
    moves = [(10_000, 0, 0), *moves]
    topups(engine, tenant.id, user, [(a, minutes(e), minutes(r)) for a, e, r in moves])
    start, end = minutes(period[0]), minutes(period[1])

    def held(as_of: int, known_at: int | None = None) -> int:
        return sum(a for a, e, r in moves if e <= as_of and (known_at is None or r <= known_at))

    in_period = sorted(
        (e, index, a) for index, (a, e, _) in enumerate(moves) if period[0] < e <= period[1]
    )
    opening = held(period[0])
    running = list(accumulate((a for _, _, a in in_period), initial=opening))

    pages, cursor = [], None
    with engine.connect() as conn:
        while True:
            page = wallet_statement(
                conn, tenant.id, user, "EUR", start=start, end=end, limit=limit, cursor=cursor
            )
            pages.append(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        account = wallet_account_id(conn, tenant.id, user, "EUR")
        for as_of, known_at in probes:
            assert balance_as_of(conn, account, minutes(as_of)) == held(as_of)
            answer = balance_as_of(conn, account, minutes(as_of), minutes(known_at))
            assert answer == held(as_of, known_at), (as_of, known_at)

    entries = [entry for page in pages for entry in page["entries"]]
    assert pages[0]["opening_balance"] == opening
    assert all(page["closing_balance"] == held(period[1]) for page in pages)
    assert [entry["amount"] for entry in entries] == [a for _, _, a in in_period]
    assert [datetime.fromisoformat(entry["effective_at"]) for entry in entries] == [
        minutes(e) for e, _, _ in in_period
    ]
    assert [entry["running_balance"] for entry in entries] == running[1:]
    assert opening + sum(entry["amount"] for entry in entries) == held(period[1])
    seen = 0
    for page in pages:
        assert page["page_opening_balance"] == running[seen]
        seen += len(page["entries"])
    credits = sum(a for _, _, a in in_period if a > 0)
    debits = -sum(a for _, _, a in in_period if a < 0)
    totals = pages[0]["totals"]
    assert totals.get("topup", {"credits": 0})["credits"] == credits
    assert totals.get("adjustment", {"debits": 0})["debits"] == debits
