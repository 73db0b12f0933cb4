"""The event feed under concurrent writers: a reader that follows `next_cursor` while
batches commit out of the order they started in sees every event exactly once, in cursor
order, and each wallet's sequences without a gap."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from ledger import posting
from ledger.feed import parse_position, read_feed
from ledger.pagination import decode_cursor
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import apply, run, submit
from tests.support.stack import eventually

WRITERS = 4
ROUNDS = 30  # per writer: a top-up and a transfer each
HELD = 4  # batches held open, after writing their events, while others commit
COMMITTED_WHILE_HELD = 12


class Progress:
    """How many batches the writers committed and how many reads the reader made."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.commits = 0
        self.polls = 0

    def bump(self, what: str) -> None:
        with self.changed:
            setattr(self, what, getattr(self, what) + 1)
            self.changed.notify_all()

    def wait_for(self, what: str, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: getattr(self, what) >= count, 60), what


def all_events(engine: Engine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, position FROM events WHERE tenant_id = :t ORDER BY xid, position"),
            {"t": tenant_id},
        ).mappings()
        return [dict(row) for row in rows]


def max_position(engine: Engine, tenant_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT max(position) FROM events WHERE tenant_id = :t"), {"t": tenant_id}
            ).scalar_one()
        )


def test_a_reader_following_the_feed_sees_every_event_once_while_commits_interleave(
    engine: Engine, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(engine, submit(engine, tenant.id, "topup", user_id="slow", amount=HELD).id)
    progress = Progress()
    written = threading.Event()
    release = threading.Event()
    done = threading.Event()
    real_write = posting.write_transaction_events

    def write_then_hold(conn: Connection, now: Any, finished: Any) -> None:
        real_write(conn, now, finished)
        if any(view["user_id"] == "slow" for _, view in finished):
            written.set()
            assert release.wait(60), "the held batch was never released"

    monkeypatch.setattr(posting, "write_transaction_events", write_then_hold)

    def write(index: int) -> None:
        me, next_one = f"w{index}", f"w{(index + 1) % WRITERS}"
        for _ in range(ROUNDS):
            for kind, fields in (
                ("topup", {"user_id": me, "amount": 5}),
                ("transfer", {"user_id": me, "to_user_id": next_one, "amount": 3}),
            ):
                apply(engine, submit(engine, tenant.id, kind, **fields).id)
                progress.bump("commits")

    held_positions: list[tuple[uuid.UUID, int]] = []

    def hold_some() -> None:
        """Apply a transfer of `slow` (between wallets no one else moves, so it holds no lock
        another batch needs) whose batch writes its event, then waits while others commit
        and the reader reads past them, and only then commits."""
        for _ in range(HELD):
            written.clear()
            release.clear()
            slow = submit(
                engine, tenant.id, "transfer", user_id="slow", to_user_id="slower", amount=1
            )
            with ThreadPoolExecutor(1) as pool:
                applying = pool.submit(apply, engine, slow.id)
                assert written.wait(60), "the slow batch never wrote its event"
                progress.wait_for("commits", progress.commits + COMMITTED_WHILE_HELD)
                progress.wait_for("polls", progress.polls + 2)
                committed_meanwhile = max_position(engine, tenant.id)
                release.set()
                applying.result()
            held_positions.append((slow.id, committed_meanwhile))
            progress.bump("commits")

    seen: list[dict[str, Any]] = []
    cursor: list[str | None] = [None]

    def poll() -> int:
        with engine.connect() as conn:
            page = read_feed(conn, tenant.id, after=cursor[0], limit=17)
        seen.extend(page["events"])
        assert page["next_cursor"] == (
            page["events"][-1]["cursor"] if page["events"] else cursor[0]
        )
        cursor[0] = page["next_cursor"]
        progress.bump("polls")
        return len(page["events"])

    def read() -> None:
        while not done.is_set():
            if poll() == 0:
                with progress.changed:
                    progress.changed.wait(1)

    with ThreadPoolExecutor(WRITERS + 2) as pool:
        reader = pool.submit(read)
        writers = [pool.submit(write, index) for index in range(WRITERS)]
        holder = pool.submit(hold_some)
        for future in [*writers, holder]:
            future.result()
        done.set()
        reader.result()

    expected = all_events(engine, tenant.id)
    assert len(expected) == 1 + WRITERS * ROUNDS * 2 + HELD
    eventually(lambda: poll() == 0 and len(seen) >= len(expected), 60, "the feed to catch up")

    assert [uuid.UUID(event["id"]) for event in seen] == [row["id"] for row in expected]
    positions = [decode_cursor(event["cursor"], parse_position) for event in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # The trap was laid: each held event was inserted before events that committed first,
    # so a reader ordering by insert position alone could have passed it by.
    by_id = {row["id"]: row["position"] for row in expected}
    for slow_id, committed_meanwhile in held_positions:
        (event_id,) = [
            row["id"] for row in expected if _transaction_of(seen, row["id"]) == str(slow_id)
        ]
        assert by_id[event_id] < committed_meanwhile
    # Each wallet's sequences, as the events show them, run 1, 2, 3, ... without a gap.
    sequences: dict[str, list[int]] = defaultdict(list)
    for event in seen:
        for wallet in event["data"].get("wallets", []):
            sequences[wallet["user_id"]].append(wallet["sequence"])
    assert set(sequences) == {"slow", "slower", *(f"w{index}" for index in range(WRITERS))}
    for numbers in sequences.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))


def _transaction_of(seen: list[dict[str, Any]], event_id: uuid.UUID) -> str:
    (event,) = [event for event in seen if event["id"] == str(event_id)]
    return str(event["data"]["id"])


def test_the_feed_filters_by_user_and_type_and_answers_an_empty_page_with_the_same_cursor(
    engine: Engine, tenant: TenantFixture
) -> None:
    run(engine, tenant.id, "topup", user_id="ann", amount=10)
    run(engine, tenant.id, "topup", user_id="bo", amount=10)
    moved = run(engine, tenant.id, "transfer", user_id="bo", to_user_id="ann", amount=4)
    refused = run(engine, tenant.id, "spend", user_id="cy", amount=1)
    with engine.connect() as conn:

        def ids(**filters: Any) -> list[str]:
            return [e["data"]["id"] for e in read_feed(conn, tenant.id, **filters)["events"]]

        everything = read_feed(conn, tenant.id)
        assert len(everything["events"]) == 4
        assert ids(user_id="ann")[1:] == [moved["id"]]
        assert ids(types=["transaction.rejected"]) == [refused["id"]]
        assert ids(types=["transaction.applied"], user_id="cy") == []
        first = read_feed(conn, tenant.id, limit=1)
        rest = read_feed(conn, tenant.id, after=first["next_cursor"])
        assert [*first["events"], *rest["events"]] == everything["events"]
        last = everything["next_cursor"]
        assert read_feed(conn, tenant.id, after=last) == {"events": [], "next_cursor": last}
